"""Reads on a real streaming replica (``ENGRAM_READ_DATABASE_URL``): searches, context and
GETs go to it; a user's reads see that user's writes at once, replay paused or not; when the
replica goes away, reads answer from the primary, and go back to the replica when it returns.

Which server answered is shown by a change made on the primary behind the API's back while
the replica's replay is paused: the replica still holds the old text, the primary the new."""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from support.api import ADMIN
from support.databases import servers_of_their_own
from support.processes import Servers, start_api, start_worker, stop_process, wait_until
from support.replica import StreamingReplica


class Stack:
    def __init__(self, api: httpx.Client, replica: StreamingReplica, owner_url: str) -> None:
        self.api = api
        self.replica = replica
        self.owner_url = owner_url

    def new_user(self) -> str:
        return f"user-{uuid.uuid4().hex[:12]}"

    def remember(self, user: str, content: str) -> dict[str, Any]:
        body = {"memories": [{"content": content}], "wait": True}
        answer = self.api.post(f"/v1/users/{user}/memories", json=body, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        memory: dict[str, Any] = answer.json()["memories"][0]
        assert memory["status"] == "ready", memory
        return memory

    def get(self, user: str, memory_id: str) -> httpx.Response:
        return self.api.get(f"/v1/users/{user}/memories/{memory_id}", headers=ADMIN)

    def search(self, user: str, query: str) -> list[str]:
        answer = self.api.post(
            f"/v1/users/{user}/search", json={"query": query, "k": 5}, headers=ADMIN
        )
        assert answer.status_code == 200, answer.text
        return [hit["content"] for hit in answer.json()["results"]]

    def context(self, user: str, query: str) -> str:
        answer = self.api.post(f"/v1/users/{user}/context", json={"query": query}, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        return answer.text

    def listed(self, user: str) -> list[str]:
        answer = self.api.get(f"/v1/users/{user}/memories", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        return [m["content"] for m in answer.json()["memories"]]

    def change_behind_the_api(self, user: str, memory_id: str, content: str) -> None:
        """Change a memory's text on the primary directly: no write position is recorded,
        so the API does not know it happened."""
        with psycopg.connect(self.owner_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE memories SET content = %s WHERE user_id = %s AND id = %s",
                [content, user, memory_id],
            )

    def reads(self) -> dict[str, float]:
        """The API's count of reads by where they ran."""
        answer = self.api.get("/metrics", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        pattern = r'^engram_replica_reads_total\{outcome="([a-z_]+)"\} ([0-9.e+]+)$'
        return {o: float(n) for o, n in re.findall(pattern, answer.text, re.MULTILINE)}


@pytest.fixture(scope="module")
def stack(servers: Servers) -> Iterator[Stack]:
    if "ENGRAM_TEST_DATABASE_URL" in os.environ:
        pytest.skip("a replica is made of the embedded PostgreSQL only")
    with servers_of_their_own(servers, redis=8) as own:
        replica = StreamingReplica(servers.home)
        replica.create()
        replica.start()
        worker = start_worker(own)
        api, url = start_api(
            own,
            ENGRAM_READ_DATABASE_URL=replica.url_for("engram_app", database_of(own.app_url)),
            # long enough that a read waiting for replay the test resumes never gives up
            ENGRAM_READ_MAX_WAIT_SECONDS="2",
            ENGRAM_READ_MAX_LAG_SECONDS="15",
        )
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                yield Stack(client, replica, own.database_url)
        finally:
            stop_process(api)
            stop_process(worker)
            replica.remove()


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def primary_reads(stack: Stack) -> float:
    """Reads sent to the primary because the replica was behind."""
    reads = stack.reads()
    return reads.get("primary_write_not_replayed", 0) + reads.get("primary_replica_unavailable", 0)


def replica_answers(stack: Stack, user: str, memory: dict[str, Any]) -> bool:
    """Whether the API reads ``user``'s memory from the replica now: with replay paused,
    the memory's text changed on the primary stays unchanged there."""
    stack.replica.catch_up()
    stack.replica.pause_replay()
    try:
        stack.change_behind_the_api(user, memory["id"], "changed on the primary only")
        answer = stack.get(user, memory["id"])
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["content"] == memory["content"])
    finally:
        stack.change_behind_the_api(user, memory["id"], memory["content"])
        stack.replica.resume_replay()


def test_searches_context_and_gets_are_read_on_the_replica(stack: Stack) -> None:
    user = stack.new_user()
    memory = stack.remember(user, "the lighthouse keeper feeds the gulls at dawn")
    stack.replica.catch_up()
    stack.replica.pause_replay()
    try:
        stack.change_behind_the_api(user, memory["id"], "a text only the primary holds")
        assert stack.get(user, memory["id"]).json()["content"] == memory["content"]
        assert stack.search(user, "who feeds the gulls") == [memory["content"]]
        assert memory["content"] in stack.context(user, "who feeds the gulls")
        assert stack.listed(user) == [memory["content"]]
    finally:
        stack.replica.resume_replay()
    stack.replica.catch_up()
    assert stack.get(user, memory["id"]).json()["content"] == "a text only the primary holds"
    assert stack.reads()["replica"] >= 4


def test_a_user_reads_their_writes_while_replay_is_paused(stack: Stack) -> None:
    user = stack.new_user()
    first = stack.remember(user, "the bakery opens at seven on weekdays")
    stack.replica.catch_up()
    stack.replica.pause_replay()
    try:
        before = primary_reads(stack)
        second = stack.remember(user, "the ferry leaves from the north pier at noon")
        assert stack.search(user, "when does the ferry leave")[0] == second["content"]
        assert stack.get(user, second["id"]).json()["content"] == second["content"]
        assert sorted(stack.listed(user)) == sorted([first["content"], second["content"]])
        changed = stack.api.patch(
            f"/v1/users/{user}/memories/{first['id']}",
            json={"metadata": {"checked": True}},
            headers=ADMIN,
        )
        assert changed.status_code == 200, changed.text
        assert stack.get(user, first["id"]).json()["metadata"] == {"checked": True}
        deleted = stack.api.delete(f"/v1/users/{user}/memories/{second['id']}", headers=ADMIN)
        assert deleted.status_code == 204, deleted.text
        assert stack.get(user, second["id"]).status_code == 404
        assert second["content"] not in stack.search(user, "when does the ferry leave")
        # every read of this user went to the primary: the replica was behind its writes,
        # then (replay paused for longer than ENGRAM_READ_MAX_LAG_SECONDS) behind altogether
        assert primary_reads(stack) == before + 6, stack.reads()
    finally:
        stack.replica.resume_replay()


def test_a_read_waits_for_the_replica_to_replay_its_write(stack: Stack) -> None:
    user = stack.new_user()
    stack.replica.catch_up()
    stack.replica.pause_replay()
    try:
        memory = stack.remember(user, "the orchard's pears ripen in late september")
        before = stack.reads().get("replica_after_wait", 0)
        resume = threading.Timer(0.2, stack.replica.resume_replay)
        resume.start()
        assert stack.search(user, "when do the pears ripen") == [memory["content"]]
        resume.join()
        assert stack.reads()["replica_after_wait"] == before + 1
    finally:
        stack.replica.resume_replay()


def test_reads_answer_from_the_primary_while_the_replica_is_gone(stack: Stack) -> None:
    user = stack.new_user()
    memory = stack.remember(user, "the choir rehearses on thursday evenings")
    assert replica_answers(stack, user, memory)
    stack.replica.stop()
    try:
        for _ in range(3):
            assert stack.search(user, "when does the choir rehearse") == [memory["content"]]
            assert stack.get(user, memory["id"]).json()["content"] == memory["content"]
        written = stack.remember(user, "the library closes early on fridays")
        assert stack.get(user, written["id"]).status_code == 200
        assert stack.search(user, "when does the library close")[0] == written["content"]
        reads = stack.reads()
        assert (
            reads.get("primary_replica_unavailable", 0)
            + reads.get("primary_after_replica_error", 0)
            >= 8
        )
    finally:
        stack.replica.start()
    # the replica is read again once the API finds it back
    wait_until(lambda: replica_answers(stack, user, memory), timeout=30, what="replica reads")
