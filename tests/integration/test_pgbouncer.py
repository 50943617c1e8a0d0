"""The API and the worker through a real PgBouncer in transaction mode (Debian's package):
writes, embeddings, searches, documents and sessions work; two users' requests interleaved
over a couple of server connections see only their own rows; nothing a client sets for its
session reaches the next client of a server connection; and a key revoked through one API
process stops at once in another, whose listener for notices connects directly
(``ENGRAM_LISTEN_DATABASE_URL``): LISTEN cannot work through a transaction pooler.

Debian 12's PgBouncer is 1.18, which does not track prepared statements (1.21 does, with
``max_prepared_statements``), so the processes run with ``ENGRAM_PREPARE_THRESHOLD=off``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from support.api import ADMIN
from support.databases import servers_of_their_own
from support.pgbouncer import PgBouncer, pgbouncer_version
from support.processes import (
    Servers,
    start_api,
    start_worker,
    stop_process,
    wait_until,
)

from models.db.pool import create_pool
from models.db.scope import run_scoped
from service.http.notices import LISTENER_NAME

SERVER_CONNECTIONS = 3  # what PgBouncer may open for the API and worker together
PROCESS_ENV = {"ENGRAM_PREPARE_THRESHOLD": "off"}

pytestmark = pytest.mark.skipif(
    pgbouncer_version() is None,
    reason="no /usr/sbin/pgbouncer: `make install` as root installs Debian's pgbouncer",
)


class Stack:
    def __init__(
        self, apis: list[httpx.Client], bouncer: PgBouncer, owner_url: str, database: str
    ) -> None:
        self.apis = apis
        self.bouncer = bouncer
        self.owner_url = owner_url
        self.database = database

    @property
    def api(self) -> httpx.Client:
        return self.apis[0]


@pytest.fixture(scope="module")
def stack(servers: Servers) -> Iterator[Stack]:
    with servers_of_their_own(servers, redis=9) as own:
        database = urlsplit(own.app_url).path.lstrip("/")
        bouncer = PgBouncer(
            servers.home,
            {"engram": (database, SERVER_CONNECTIONS), "single": (database, 1)},
        )
        bouncer.start()
        through = bouncer.url_for("engram_app", "engram")
        env = {**PROCESS_ENV, "ENGRAM_DATABASE_URL": through}
        processes = [start_worker(own, **env)]
        try:
            urls = []
            for _ in range(2):
                api, url = start_api(own, **env, ENGRAM_LISTEN_DATABASE_URL=own.app_url)
                processes.append(api)
                urls.append(url)
            clients = [httpx.Client(base_url=url, timeout=60) for url in urls]
            yield Stack(clients, bouncer, own.database_url, database)
            for client in clients:
                client.close()
        finally:
            for process in processes:
                stop_process(process)
            bouncer.stop()


def app_backends(stack: Stack) -> int:
    """engram_app's server connections to the database, the direct listeners' aside."""
    with psycopg.connect(stack.owner_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND usename = 'engram_app' AND application_name <> %s",
            [stack.database, LISTENER_NAME],
        ).fetchone()
    assert found is not None
    return int(found[0])


def test_memories_documents_sessions_and_search_through_pgbouncer(stack: Stack) -> None:
    user = f"user-{uuid.uuid4().hex[:10]}"
    api = stack.api
    answer = api.post(
        f"/v1/users/{user}/memories",
        json={"memories": [{"content": "the tide is lowest at four"}], "wait": True},
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["memories"][0]["status"] == "ready"
    batch = api.post(
        f"/v1/users/{user}/documents",
        json={
            "documents": [
                {
                    "title": "harbour notes",
                    "content": "Boats leave the harbour at dawn. The market opens at nine.",
                }
            ],
            "wait": True,
        },
        headers=ADMIN,
    )
    assert batch.status_code in (200, 202), batch.text
    document = batch.json()["documents"][0]
    wait_until(
        lambda: (
            api.get(f"/v1/users/{user}/documents/{document['id']}", headers=ADMIN).json()["status"]
            == "ready"
        ),
        timeout=60,
        what="the document's chunks to be embedded",
    )
    session = api.post(f"/v1/users/{user}/sessions", json={}, headers=ADMIN)
    assert session.status_code == 201, session.text
    turns = api.post(
        f"/v1/users/{user}/sessions/{session.json()['id']}/messages",
        json={"messages": [{"role": "user", "content": "I keep bees on the roof"}], "wait": True},
        headers=ADMIN,
    )
    assert turns.status_code == 201, turns.text
    for query, expected in [
        ("when is the tide low", "the tide is lowest at four"),
        ("what time do boats leave", "Boats leave the harbour at dawn."),
        ("where are the bees", "I keep bees on the roof"),
    ]:
        found = api.post(f"/v1/users/{user}/search", json={"query": query, "k": 3}, headers=ADMIN)
        assert found.status_code == 200, found.text
        assert expected in found.json()["results"][0]["content"], (query, found.json())
    chunks = api.get(f"/v1/users/{user}/documents/{document['id']}/chunks", headers=ADMIN)
    assert chunks.status_code == 200 and chunks.json()["chunks"], chunks.text
    listed = api.get(f"/v1/users/{user}/memories", headers=ADMIN)
    assert listed.status_code == 200 and len(listed.json()["memories"]) == 2, listed.text
    # everything went through PgBouncer's few server connections
    assert app_backends(stack) <= SERVER_CONNECTIONS


def test_two_users_interleaved_see_only_their_own(stack: Stack) -> None:
    users = [f"user-{uuid.uuid4().hex[:10]}" for _ in range(2)]

    def act(step: int) -> None:
        user = users[step % 2]
        api = stack.apis[step % len(stack.apis)]
        written = api.post(
            f"/v1/users/{user}/memories",
            json={"memories": [{"content": f"{user} note {step}"}]},
            headers=ADMIN,
        )
        assert written.status_code == 202, written.text
        listed = api.get(f"/v1/users/{user}/memories", params={"limit": 100}, headers=ADMIN)
        assert listed.status_code == 200, listed.text
        contents = [m["content"] for m in listed.json()["memories"]]
        assert f"{user} note {step}" in contents
        assert all(c.startswith(f"{user} ") for c in contents), contents
        found = api.post(f"/v1/users/{user}/search", json={"query": "note", "k": 50}, headers=ADMIN)
        assert found.status_code == 200, found.text
        assert all(h["content"].startswith(f"{user} ") for h in found.json()["results"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(act, range(60)))
    assert app_backends(stack) <= SERVER_CONNECTIONS


def test_no_session_state_reaches_the_next_client(stack: Stack) -> None:
    """Two clients of the one server connection of ``single``: what the API's pool sets for
    its connections (the user's scope, the statement timeout, the text-search
    configuration) lasts one transaction, so the other client sees none of it."""

    async def as_the_api() -> tuple[int, list[Any]]:
        pool = create_pool(
            stack.bouncer.url_for("engram_app", "single"),
            min_size=1,
            max_size=1,
            prepare_threshold=None,
            statement_timeout=42,
            text_config="simple",
        )
        await pool.open()
        try:

            async def inside(conn: psycopg.AsyncConnection) -> tuple[int, list[Any]]:
                row = await (
                    await conn.execute(
                        "SELECT pg_backend_pid(), current_setting('engram.user_id'), "
                        "current_setting('statement_timeout'), "
                        "current_setting('engram.text_config')"
                    )
                ).fetchone()
                assert row is not None
                return row[0], list(row[1:])

            return await run_scoped(pool, "alice", inside)
        finally:
            await pool.close()

    pid, seen = asyncio.run(as_the_api())
    assert seen == ["alice", "42s", "simple"]
    with psycopg.connect(stack.bouncer.url_for("engram_app", "single"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_backend_pid(), current_setting('engram.user_id', true), "
            "current_setting('statement_timeout'), current_setting('engram.text_config', true)"
        ).fetchone()
    assert row is not None
    assert row[0] == pid  # the same server connection
    assert row[1] in (None, "") and row[2] == "0" and row[3] in (None, ""), row


def test_a_key_revoked_through_one_process_stops_in_the_other(stack: Stack) -> None:
    first, second = stack.apis
    user = f"user-{uuid.uuid4().hex[:10]}"
    created = first.post("/v1/keys", json={"user_id": user}, headers=ADMIN)
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    assert second.get(f"/v1/users/{user}/memories", headers=key).status_code == 200
    revoked = first.delete(f"/v1/keys/{created.json()['id']}", headers=ADMIN)
    assert revoked.status_code in (200, 204), revoked.text
    # the second process remembers the key for a minute unless its listener hears of this
    wait_until(
        lambda: second.get(f"/v1/users/{user}/memories", headers=key).status_code == 401,
        timeout=10,
        what="the revoked key to stop in the other process",
    )
