"""A write that waits is woken by Postgres when its items settle (migration 0024,
service/http/wait.py): a notice per user as items leave ``pending``, none for what leaves
them pending, and a waiting request that reads again only when told."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from support.api import ADMIN
from support.outbox import waiting
from support.processes import wait_until

from service.http import notices, wait
from service.http.wait import Settlements, until_settled, user_key


def heard(listener: psycopg.Connection[Any]) -> list[str]:
    """The notices ``listener`` received, in order, once a second passes without one."""
    return [n.payload for n in listener.notifies(timeout=1.0)]


def test_items_leaving_pending_notify_their_users_once_per_transaction(quiet_db):
    database, conn = quiet_db
    waiting(conn, "alice", 3)
    waiting(conn, "bob", 1)
    with psycopg.connect(database.owner_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {wait.CHANNEL}")
        # a claim, a retry scheduled and a release leave the items pending
        conn.execute(
            "UPDATE embed_state SET claimed_until = now() + interval '1 minute', "
            "attempts = attempts + 1"
        )
        conn.execute("UPDATE embed_state SET last_error = 'timed out', claimed_until = NULL")
        assert heard(listener) == []
        with conn.transaction():
            conn.execute("UPDATE embed_state SET status = 'ready' WHERE user_id = 'alice'")
            conn.execute("UPDATE embed_state SET status = 'failed' WHERE user_id = 'bob'")
        assert heard(listener) == [user_key("alice"), user_key("bob")]
        conn.execute("UPDATE embed_state SET status = 'ready' WHERE user_id = 'bob'")
        assert heard(listener) == []  # failed to ready: not a wait's business


def test_a_waiting_reader_reads_again_when_its_users_notice_arrives(quiet_db, monkeypatch):
    database, conn = quiet_db
    [item] = waiting(conn, "carol", 1)
    waiting(conn, "dave", 1)
    # no reading again on its own: only a notice can end this wait before its timeout
    monkeypatch.setattr(wait, "RECHECK_SECONDS", 600.0)
    reads: list[str] = []

    def status() -> str:
        with psycopg.connect(database.owner_url) as reader:
            row = reader.execute(
                "SELECT status FROM embed_state WHERE item_id = %s", [item]
            ).fetchone()
        assert row is not None
        reads.append(row[0])
        return str(row[0])

    async def main() -> tuple[str, bool]:
        settlements = Settlements()
        listener = asyncio.create_task(
            notices.listen(database.owner_url, {wait.CHANNEL: settlements})
        )
        try:
            while not settlements.listening:
                await asyncio.sleep(0.01)
            waited = asyncio.create_task(
                until_settled(
                    settlements,
                    "carol",
                    60,
                    lambda: asyncio.to_thread(status),
                    lambda s: s != "pending",
                )
            )
            while not reads:
                await asyncio.sleep(0.01)
            # another user's item settling wakes nobody waiting on carol
            await asyncio.to_thread(
                conn.execute, "UPDATE embed_state SET status = 'ready' WHERE user_id = 'dave'"
            )
            await asyncio.sleep(0.5)
            assert reads == ["pending"]
            await asyncio.to_thread(
                conn.execute, "UPDATE embed_state SET status = 'ready' WHERE user_id = 'carol'"
            )
            return await asyncio.wait_for(waited, 30)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    assert asyncio.run(main()) == ("ready", True)
    assert reads == ["pending", "ready"]


@pytest.mark.usefixtures("worker")
def test_a_memory_that_waits_is_answered_when_its_notice_arrives(client, new_user, monkeypatch):
    runtime = client.app.state.runtime
    wait_until(lambda: runtime.settlements.listening, timeout=10)
    monkeypatch.setattr(wait, "RECHECK_SECONDS", 600.0)
    user, headers = new_user()
    added = client.post(
        f"/v1/users/{user}/memories",
        json={"memories": [{"content": "The plumber comes on Thursday."}], "wait": True},
        headers=headers,
    )
    assert added.status_code == 200, added.text  # not 202: the wait did not time out
    assert added.json()["memories"][0]["status"] == "ready"
    assert client.delete(f"/v1/users/{user}", headers=ADMIN).status_code == 200
