"""Fair claims: the interactive lane goes first, and within a lane the users take turns.

Claims are made by hand on a database of this module's own, where no worker runs, so each
test sees exactly the jobs it wrote; the last test runs the real worker.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from support.outbox import waiting
from support.processes import wait_until

from models.db.pool import create_pool
from models.db.scope import ALL_USERS, run_scoped
from models.embedding.spaces import MINILM_384
from models.jobs import outbox


def claim(app_url: str, limit: int, *, claims: int = 1) -> list[list[Any]]:
    """``claims`` claims of ``limit`` made at once by as many connections, as the service's
    role: the (user, item) pairs each one got."""

    async def main() -> list[list[Any]]:
        pool = create_pool(app_url, min_size=claims, max_size=claims)
        await pool.open()
        try:
            made = await asyncio.gather(
                *(
                    run_scoped(
                        pool, ALL_USERS, outbox.claim, MINILM_384, limit=limit, lease_seconds=60
                    )
                    for _ in range(claims)
                )
            )
        finally:
            await pool.close()
        return [[(c.user_id, c.id) for c in got] for got in made]

    return asyncio.run(main())


def test_interactive_jobs_go_before_bulk_jobs(quiet_db):
    database, conn = quiet_db
    bulk = waiting(conn, "loader", 100, lane="bulk")
    chat = waiting(conn, "chatter", 3)
    # a claim holds one lane: the chat's items alone, then the bulk's (a quarter as many)
    [first] = claim(database.app_url, 40)
    assert set(first) == {("chatter", item) for item in chat}
    [second] = claim(database.app_url, 40)
    assert set(second) == {("loader", item) for item in bulk[: 40 // outbox.BULK_SHARE]}


def test_within_a_lane_users_take_turns(quiet_db):
    database, conn = quiet_db
    big = waiting(conn, "big", 200, lane="bulk")
    small = waiting(conn, "small", 5, lane="bulk")
    [first] = claim(database.app_url, 10 * outbox.BULK_SHARE)
    # each one's oldest, then each one's second...: the small user's five all go now
    assert set(first) == {("big", item) for item in big[:5]} | {("small", item) for item in small}
    [second] = claim(database.app_url, 10 * outbox.BULK_SHARE)
    assert set(second) == {("big", item) for item in big[5:15]}


def test_when_more_users_wait_than_a_claim_takes_the_next_claim_starts_after_the_last(quiet_db):
    database, conn = quiet_db
    users = [f"user-{n:02d}" for n in range(25)]
    for user in users:
        waiting(conn, user, 2)
    served = [{user for user, _ in claim(database.app_url, 10)[0]} for _ in range(5)]
    # round the circle: every user's first job before anyone's second
    assert served == [
        set(users[:10]),
        set(users[10:20]),
        set(users[20:] + users[:5]),
        set(users[5:15]),
        set(users[15:]),
    ]


def test_concurrent_claims_take_consecutive_turns_never_the_same_jobs(quiet_db):
    database, conn = quiet_db
    for user in ("a", "b", "c", "d"):
        waiting(conn, user, 30, lane="bulk")
    made = claim(database.app_url, 20 * outbox.BULK_SHARE, claims=4)
    taken = [pair for got in made for pair in got]
    assert all(len(got) == 20 for got in made)
    assert len(set(taken)) == 80
    assert Counter(user for user, _ in taken) == {"a": 20, "b": 20, "c": 20, "d": 20}


def test_a_held_job_is_passed_over_and_its_user_keeps_its_turn(quiet_db):
    database, conn = quiet_db
    first, second = waiting(conn, "held", 2)
    other = waiting(conn, "other", 1)
    conn.execute(
        "UPDATE embed_state SET claimed_until = now() + interval '1 hour' WHERE item_id = %s",
        [first],
    )
    [got] = claim(database.app_url, 5)
    assert sorted(got) == sorted([("held", second), ("other", other[0])])
    assert claim(database.app_url, 5) == [[]]


def test_a_user_whose_jobs_are_all_held_does_not_stop_the_turns(quiet_db):
    """A claim of one passes over the next user in turn if nobody can take their jobs."""
    database, conn = quiet_db
    waiting(conn, "a-first", 1)
    claim(database.app_url, 1)  # the lane's turn is now after a-first
    [held] = waiting(conn, "b-held", 1)
    conn.execute(
        "UPDATE embed_state SET claimed_until = now() + interval '1 hour' WHERE item_id = %s",
        [held],
    )
    later = waiting(conn, "c-later", 1)
    assert claim(database.app_url, 1) == [[("c-later", later[0])]]


WORDS = ("river", "stone", "lantern", "harbour", "meadow", "copper", "violin", "orchard")


def paragraphs(rng: random.Random, count: int) -> str:
    """``count`` paragraphs of about 200 words: about one chunk each."""
    return "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(200)).capitalize() + "." for _ in range(count)
    )


@pytest.mark.usefixtures("worker")
def test_a_chat_memory_is_embedded_while_another_users_bulk_load_waits(client, db, new_user):
    """A batch of documents is bulk work: a memory written afterwards, by someone else, with
    ``wait``, is ready long before the batch, however many wake-ups the batch sent first."""
    loader, loader_headers = new_user()
    chatter, chatter_headers = new_user()
    rng = random.Random(7)
    docs = [{"content": paragraphs(rng, 5), "title": f"doc {n}"} for n in range(120)]
    answer = client.post(
        f"/v1/users/{loader}/documents", json={"documents": docs}, headers=loader_headers
    )
    assert answer.status_code == 202, answer.text

    def pending(user: str) -> int:
        row = db.execute(
            "SELECT count(*) FROM embed_state WHERE user_id = %s AND status = 'pending'", [user]
        ).fetchone()
        return int(row[0])

    bulk = pending(loader)
    assert bulk >= 550  # more wake-up messages' worth, ahead of the chat's in Redis
    chat = client.post(
        f"/v1/users/{chatter}/memories",
        json={"memories": [{"content": "The train to Lyon leaves at nine."}], "wait": True},
        headers=chatter_headers,
    )
    left = pending(loader)
    assert chat.status_code == 200 and chat.json()["memories"][0]["status"] == "ready"
    assert left > bulk / 2, f"{left} of {bulk} bulk chunks still waiting"
    lanes = db.execute(
        "SELECT DISTINCT lane FROM embed_state WHERE user_id = %s", [loader]
    ).fetchall()
    assert lanes == [("bulk",)]
    # the rest of the suite should not wait behind this module's bulk load
    wait_until(lambda: pending(loader) == 0, timeout=240, what="the bulk load embedded")


def test_a_bulk_claim_gives_back_what_it_did_not_encode_when_interactive_work_waits(quiet_db):
    """A bulk batch that stops early for interactive work gives its rest back: waiting
    again at once, the attempt not counted; the next claim takes the interactive work."""
    database, conn = quiet_db
    waiting(conn, "loader", 8, lane="bulk")

    async def main() -> tuple[Any, list[Any], Any, list[Any]]:
        pool = create_pool(database.app_url, min_size=1, max_size=1)
        await pool.open()
        try:

            def scoped(work: Any, *args: Any, **kwargs: Any) -> Any:
                return run_scoped(pool, ALL_USERS, work, *args, **kwargs)

            got = await scoped(outbox.claim, MINILM_384, limit=4 * outbox.BULK_SHARE,
                               lease_seconds=60)  # fmt: skip
            before = await scoped(outbox.interactive_work, MINILM_384.name)
            chat = waiting(conn, "chatter", 1)
            during = await scoped(outbox.interactive_work, MINILM_384.name)
            await scoped(outbox.release, MINILM_384, got[2:])
            after = await scoped(outbox.claim, MINILM_384, limit=8, lease_seconds=60)
            claimed = await scoped(outbox.interactive_work, MINILM_384.name)
            await scoped(outbox.record_failure, MINILM_384, after[0], "timed out",
                         permanent=False, max_attempts=5, retry_in_seconds=60)  # fmt: skip
            retrying = await scoped(outbox.interactive_work, MINILM_384.name)
            return before, [c.id for c in got], during, [(after, chat, claimed, retrying)]
        finally:
            await pool.close()

    before, claimed, during, [(after, chat, taken, retrying)] = asyncio.run(main())
    assert before == (False, False) and during == (True, False)
    assert taken == (False, True)  # the chat is being embedded: bulk batches pause
    assert retrying == (False, False)  # a retry's back-off holds nobody up
    assert len(claimed) == 4
    rows = {
        item: (free, attempts)
        for item, free, attempts in conn.execute(
            "SELECT item_id, claimed_until IS NULL, attempts FROM embed_state "
            "WHERE user_id = 'loader' AND item_id = ANY(%s)",
            [claimed],
        )
    }
    assert [rows[i] for i in claimed] == [(False, 1), (False, 1), (True, 0), (True, 0)]
    assert [c.id for c in after] == chat  # interactive first
