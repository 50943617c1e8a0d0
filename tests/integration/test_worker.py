"""The worker's promises: idempotent claims, no stale or second vector, nothing lost."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector, register_vector_async
from support.api import add_memories
from support.processes import wait_until

from models.embedding.spaces import MINILM_384
from models.jobs import outbox as jobs
from models.jobs.wakeups import WakeUps
from models.types import Claim, Embedded

T = TypeVar("T")


def run(database_url: str, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await register_vector_async(conn)
            return await work(conn)

    return asyncio.run(main())


def insert_pending(db, user: str, content: str, *, claimed_for: str | None = "1 hour") -> uuid.UUID:
    """A pending row as the API writes it; ``claimed_for`` keeps the live worker off it."""
    item = uuid.uuid4()
    digest = hashlib.sha256(content.encode()).digest()
    db.execute(
        "INSERT INTO memories (user_id, id, content, space, content_hash) "
        "VALUES (%s, %s, %s, 'minilm-384', %s)",
        [user, item, content, digest],
    )
    db.execute(
        "INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, claimed_until) "
        "VALUES (%s, %s, 'minilm-384', 'memory', %s, now() + %s::interval)",
        [user, item, digest, claimed_for],
    )
    return item


async def claim_one(conn: psycopg.AsyncConnection[Any]) -> list[Claim]:
    """A claim of one job, as a worker makes it (on a quiet database: the test's own job)."""
    async with conn.transaction():
        return await jobs.claim(conn, MINILM_384, limit=1, lease_seconds=60)


def state(db, user: str, item: uuid.UUID) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT e.status, e.attempts, e.last_error, count(v.item_id) FROM embed_state e "
        "LEFT JOIN vec_minilm_384 v ON v.user_id = e.user_id AND v.item_id = e.item_id "
        "WHERE e.user_id = %s AND e.item_id = %s AND e.space = 'minilm-384' GROUP BY 1, 2, 3",
        [user, item],
    ).fetchone()


def result(user: str, item: uuid.UUID, content: str) -> Embedded:
    vector = np.random.default_rng(0).random(384).astype(np.float32)
    return Embedded(
        user_id=user,
        id=item,
        kind="memory",
        content_hash=hashlib.sha256(content.encode()).digest(),
        embedding=vector,
    )


def test_a_stale_result_writes_nothing(servers, db):
    user = f"u-{uuid.uuid4().hex[:8]}"
    item = insert_pending(db, user, "new content")
    stale = result(user, item, "old content")
    assert run(servers.database_url, lambda c: jobs.store_vectors(c, MINILM_384, [stale])) == 0
    assert state(db, user, item) == ("pending", 0, None, 0)


def test_a_duplicate_result_never_makes_a_second_vector(servers, db):
    user = f"u-{uuid.uuid4().hex[:8]}"
    item = insert_pending(db, user, "hello")
    done = result(user, item, "hello")
    assert run(servers.database_url, lambda c: jobs.store_vectors(c, MINILM_384, [done, done])) == 1
    assert run(servers.database_url, lambda c: jobs.store_vectors(c, MINILM_384, [done])) == 0
    assert state(db, user, item) == ("ready", 0, None, 1)


def test_a_deleted_item_stays_deleted(quiet_db):
    (database, db), user = quiet_db, f"u-{uuid.uuid4().hex[:8]}"
    item = insert_pending(db, user, "to be deleted", claimed_for=None)
    claims = run(database.owner_url, claim_one)
    assert [c.id for c in claims] == [item]
    db.execute("DELETE FROM memories WHERE user_id = %s AND id = %s", [user, item])
    db.execute("DELETE FROM embed_state WHERE user_id = %s AND item_id = %s", [user, item])
    done = result(user, item, "to be deleted")
    assert run(database.owner_url, lambda c: jobs.store_vectors(c, MINILM_384, [done])) == 0
    assert state(db, user, item) is None
    assert db.execute(
        "SELECT count(*) FROM vec_minilm_384 WHERE item_id = %s", [item]
    ).fetchone() == (0,)


def test_a_claimed_item_cannot_be_claimed_again_until_its_lease_ends(quiet_db):
    (database, db), user = quiet_db, f"u-{uuid.uuid4().hex[:8]}"
    insert_pending(db, user, "claim me", claimed_for=None)
    first = run(database.owner_url, claim_one)
    second = run(database.owner_url, claim_one)
    assert len(first) == 1 and first[0].attempts == 1
    assert second == []


@pytest.mark.parametrize(
    ("permanent", "attempts_before", "expected_status"),
    [(False, 0, "pending"), (False, 4, "failed"), (True, 0, "failed")],
)
def test_failures_retry_until_attempts_run_out(
    quiet_db, permanent, attempts_before, expected_status
):
    (database, db), user = quiet_db, f"u-{uuid.uuid4().hex[:8]}"
    item = insert_pending(db, user, "flaky", claimed_for=None)
    db.execute("UPDATE embed_state SET attempts = %s WHERE item_id = %s", [attempts_before, item])
    claimed = run(database.owner_url, claim_one)[0]
    run(
        database.owner_url,
        lambda c: jobs.record_failure(
            c,
            MINILM_384,
            claimed,
            "provider said no",
            permanent=permanent,
            max_attempts=5,
            retry_in_seconds=3600,
        ),
    )
    status, attempts, error, vectors = state(db, user, item)
    assert (status, error, vectors) == (expected_status, "provider said no", 0)
    assert attempts == attempts_before + 1


@pytest.mark.usefixtures("worker")
def test_the_same_ids_in_fifty_messages_make_one_vector_each(client, new_user, servers, db):
    user, headers = new_user()
    body = {"memories": [{"content": f"duplicate message test {i}"} for i in range(20)]}
    memories = client.post(f"/v1/users/{user}/memories", json=body, headers=headers).json()[
        "memories"
    ]
    jobs_ = [(MINILM_384.name, user, uuid.UUID(m["id"])) for m in memories]
    wakeups = WakeUps(servers.redis_url)
    for _ in range(50):
        asyncio.run(wakeups.embed(jobs_))
    wakeups.close()
    wait_until(
        lambda: (
            db.execute(
                "SELECT count(*) FROM embed_state WHERE user_id = %s AND status = 'ready'", [user]
            ).fetchone()
            == (20,)
        ),
        what="20 ready",
    )
    vectors = db.execute(
        "SELECT item_id, count(*) FROM vec_minilm_384 WHERE user_id = %s GROUP BY 1", [user]
    ).fetchall()
    assert len(vectors) == 20 and all(count == 1 for _, count in vectors)


@pytest.mark.usefixtures("worker")
def test_items_whose_message_was_lost_are_swept_up(servers, db):
    """Rows committed as pending with no message at all (Redis lost it) still get embedded."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    items = [insert_pending(db, user, f"orphaned item {i}", claimed_for=None) for i in range(5)]
    wait_until(
        lambda: all(state(db, user, i)[0] == "ready" for i in items),
        timeout=60,
        what="the sweep to re-send lost items",
    )
    assert all(state(db, user, i)[3] == 1 for i in items)


@pytest.mark.usefixtures("worker")
def test_content_changed_in_flight_ends_with_the_newest_vector(client, new_user, db, embedder):
    user, headers = new_user()
    memory = add_memories(client, user, headers, ["The first version of the text."])[0]
    url = f"/v1/users/{user}/memories/{memory['id']}"
    for version in range(5):  # rapid changes while earlier jobs are still in flight
        client.patch(
            url, json={"content": f"Version {version}: cats sleep all day."}, headers=headers
        )
    newest = "Version 4: cats sleep all day."
    wait_until(lambda: client.get(url, headers=headers).json()["status"] == "ready", what="ready")
    register_vector(db)
    row = db.execute(
        "SELECT v.embedding, v.content_hash FROM vec_minilm_384 v "
        "WHERE v.user_id = %s AND v.item_id = %s",
        [user, memory["id"]],
    ).fetchone()
    assert bytes(row[1]) == hashlib.sha256(newest.encode()).digest()
    expected = embedder.encode([newest])[0]
    assert float(np.dot(row[0].to_numpy(), expected)) == pytest.approx(1.0, abs=1e-4)
