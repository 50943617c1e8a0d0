"""Fault tests: real servers and processes are killed mid-ingest, and nothing accepted is lost.

Each test ends with the same check: every accepted item is `ready` with exactly one vector
made from its current content, or `failed` with an error. These tests kill and restart
servers, so they run on a stack of their own, apart from the session's servers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from litestar.testing import TestClient
from support.api import ADMIN
from support.processes import (
    WORKER_ENV,
    Servers,
    answers,
    free_port,
    prepare_database,
    start_worker,
    stop_process,
    wait_until,
)

from models.embedding.spaces import MINILM_384
from models.settings import Settings
from service.http.app import create_app
from service.ops.embedded import EmbeddedPostgres, EmbeddedRedis

FAST = {**WORKER_ENV, "ENGRAM_CLAIM_SECONDS": "3", "ENGRAM_DB_TIMEOUT_SECONDS": "2"}


class Stack(msgspec.Struct):
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    servers: Servers
    client: Any


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("faults")
    postgres, redis = EmbeddedPostgres(home), EmbeddedRedis(home)
    database_url = postgres.start()
    app_url = prepare_database(database_url, postgres)
    servers = Servers(
        database_url=database_url, app_url=app_url, redis_url=redis.start(), home=home
    )
    env = {
        "ENGRAM_HOME": str(home),
        "ENGRAM_DATABASE_URL": servers.app_url,
        "ENGRAM_REDIS_URL": servers.redis_url,
        "ENGRAM_ADMIN_KEY": ADMIN["Authorization"].removeprefix("Bearer "),
        **FAST,
    }
    app = create_app(Settings.from_env(env), embedders={MINILM_384.name: embedder})
    try:
        with TestClient(app) as client:
            yield Stack(postgres=postgres, redis=redis, servers=servers, client=client)
    finally:
        redis.stop()
        postgres.stop()


@pytest.fixture
def worker(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(stack.servers, **FAST)
    yield process
    stop_process(process)


def add(stack: Stack, user: str, count: int, *, prefix: str = "fact") -> list[str]:
    """Accept ``count`` memories (no waiting); return their ids."""
    body = {"memories": [{"content": f"{prefix} {i}: {uuid.uuid4().hex}"} for i in range(count)]}
    answer = stack.client.post(f"/v1/users/{user}/memories", json=body, headers=ADMIN)
    assert answer.status_code == 202, answer.text
    return [m["id"] for m in answer.json()["memories"]]


def settled(stack: Stack, user: str) -> bool:
    with psycopg.connect(stack.servers.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'pending') FROM embed_state WHERE user_id = %s",
            [user],
        ).fetchone()
    return row == (0,)


def assert_nothing_lost(stack: Stack, user: str, accepted: list[str]) -> None:
    """Every accepted item is ready with exactly one current vector, or failed with an error."""
    wait_until(lambda: settled(stack, user), timeout=120, what=f"{user}'s items to settle")
    with psycopg.connect(stack.servers.database_url) as conn:
        rows = conn.execute(
            "SELECT m.id::text, e.status, e.last_error, m.content, "
            "       array_agg(v.content_hash) FILTER (WHERE v.item_id IS NOT NULL) "
            "FROM memories m "
            "JOIN embed_state e ON e.user_id = m.user_id AND e.item_id = m.id "
            "LEFT JOIN vec_minilm_384 v ON v.user_id = m.user_id AND v.item_id = m.id "
            "WHERE m.user_id = %s GROUP BY 1, 2, 3, 4",
            [user],
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(accepted)
    for item_id, status, error, content, hashes in rows:
        if status == "failed":
            assert error, f"{item_id} failed without an error"
            continue
        assert status == "ready", f"{item_id} is {status}"
        assert [bytes(h) for h in hashes] == [hashlib.sha256(content.encode()).digest()]


def assert_nothing_lost_with_a_new_worker(stack: Stack, user: str, accepted: list[str]) -> None:
    replacement = start_worker(stack.servers, **FAST)
    try:
        assert_nothing_lost(stack, user, accepted)
    finally:
        stop_process(replacement)


def kill_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its dramatiq children: no chance to release anything."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_worker_killed_mid_batch(stack, worker):
    user = f"kill-{uuid.uuid4().hex[:6]}"
    accepted = add(stack, user, 400)
    wait_until(lambda: not settled(stack, user) and _ready_count(stack, user) > 0, what="progress")
    kill_worker(worker)
    assert _ready_count(stack, user) < 400, "the batch finished before the kill"
    assert_nothing_lost_with_a_new_worker(stack, user, accepted)


def test_redis_killed_and_restarted_empty_mid_ingest(stack, worker):
    user = f"redis-{uuid.uuid4().hex[:6]}"
    accepted = add(stack, user, 300)
    stack.redis.kill()  # every queued message is gone
    accepted += add(stack, user, 20, prefix="while redis is down")
    stack.redis.start()
    accepted += add(stack, user, 20, prefix="after the restart")
    assert_nothing_lost(stack, user, accepted)


def test_items_written_while_redis_is_down_are_picked_up(stack, worker):
    user = f"down-{uuid.uuid4().hex[:6]}"
    stack.redis.kill()
    try:
        accepted = add(stack, user, 30)
        ready = stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] == "unreachable"
    finally:
        stack.redis.start()
    assert_nothing_lost(stack, user, accepted)


def test_postgres_restart_mid_ingest_answers_503_then_recovers(stack, worker):
    user = f"pg-{uuid.uuid4().hex[:6]}"
    accepted = add(stack, user, 300)
    stack.postgres.kill()  # immediate mode: like a crash
    try:
        during = stack.client.get(f"/v1/users/{user}/memories", headers=ADMIN)
        assert during.status_code == 503
        assert during.headers["retry-after"]
        assert during.json()["error"]["code"] == "unavailable"
        refused = stack.client.post(
            f"/v1/users/{user}/memories", json={"memories": [{"content": "x"}]}, headers=ADMIN
        )
        assert refused.status_code == 503  # refused, so not accepted: nothing to keep
    finally:
        stack.postgres.start()
    wait_until(
        lambda: stack.client.get(f"/v1/users/{user}/memories", headers=ADMIN).status_code == 200,
        what="the API to recover by itself",
    )
    accepted += add(stack, user, 10, prefix="after the restart")
    assert_nothing_lost(stack, user, accepted)


def _ready_count(stack: Stack, user: str) -> int:
    with psycopg.connect(stack.servers.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM embed_state WHERE user_id = %s AND status = 'ready'", [user]
        ).fetchone()
    return int(row[0]) if row else 0


def test_sigterm_lets_the_worker_finish_its_batch_and_hold_no_claim(stack, worker):
    user = f"term-{uuid.uuid4().hex[:6]}"
    accepted = add(stack, user, 400)
    wait_until(lambda: _ready_count(stack, user) > 0, what="work to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0
    with psycopg.connect(stack.servers.database_url) as conn:
        held = conn.execute(
            "SELECT count(*) FROM embed_state WHERE user_id = %s AND status = 'pending' "
            "AND claimed_until > now()",
            [user],
        ).fetchone()
    assert held == (0,), "a stopped worker left items claimed"
    assert_nothing_lost_with_a_new_worker(stack, user, accepted)


def test_an_item_that_keeps_killing_workers_ends_failed(stack, worker):
    """Attempts are counted in Postgres: past the limit the item fails instead of looping."""
    user = f"poison-{uuid.uuid4().hex[:6]}"
    item, content = str(uuid.uuid4()), "a text that five workers died on"
    with psycopg.connect(stack.servers.database_url, autocommit=True) as conn:
        # As if five workers had died on it: attempts used up, the last claim lapsed.
        digest = hashlib.sha256(content.encode()).digest()
        conn.execute(
            "INSERT INTO memories (user_id, id, content, space, content_hash) "
            "VALUES (%s, %s, %s, 'minilm-384', %s)",
            [user, item, content, digest],
        )
        conn.execute(
            "INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, attempts, "
            "claimed_until) VALUES (%s, %s, 'minilm-384', 'memory', %s, 5, now())",
            [user, item, digest],
        )
    assert_nothing_lost(stack, user, [item])
    failed = stack.client.get(f"/v1/users/{user}/memories/{item}", headers=ADMIN).json()
    assert failed["status"] == "failed" and "gave up after 5 attempts" in failed["error"]


def test_sigterm_lets_the_api_finish_requests_in_flight(stack):
    """A request in flight when the API gets SIGTERM still gets its answer."""
    port = free_port()
    env = {
        **os.environ,
        "ENGRAM_HOME": str(stack.servers.home),
        "ENGRAM_DATABASE_URL": stack.servers.app_url,
        "ENGRAM_REDIS_URL": stack.servers.redis_url,
        "ENGRAM_ADMIN_KEY": ADMIN["Authorization"].removeprefix("Bearer "),
        "ENGRAM_PORT": str(port),
        "ENGRAM_WAIT_TIMEOUT_SECONDS": "4",  # no worker runs: the request waits this long
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "service.ops.cli", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/healthz"), timeout=120, what="the API to start")
        with ThreadPoolExecutor(1) as pool:
            body = {"memories": [{"content": "in flight during shutdown"}], "wait": True}
            answer = pool.submit(
                httpx.post, f"{url}/v1/users/drain/memories", json=body, headers=ADMIN, timeout=60
            )
            time.sleep(1)
            api.send_signal(signal.SIGTERM)
            assert answer.result().status_code == 202  # answered, not cut off
        # uvicorn re-raises the signal once it has shut down gracefully
        assert api.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        stop_process(api)
