"""Fixtures: real servers (embedded PostgreSQL + pgvector and Redis, or external ones via
ENGRAM_TEST_DATABASE_URL / ENGRAM_TEST_REDIS_URL), the real model, a real dramatiq worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from models.db import schema
from models.embedding.local import LocalEmbedder
from models.embedding.provider import Embedder
from models.embedding.spaces import MINILM_384
from models.settings import Settings
from models.store import keys
from service.http.app import create_app
from service.ops.embedded import EmbeddedPostgres, EmbeddedRedis

ADMIN_KEY = "test-admin-key-" + uuid.uuid4().hex
REPO = Path(__file__).resolve().parent.parent

# Short intervals so fault handling shows within seconds in tests.
WORKER_ENV = {
    "ENGRAM_SWEEP_INTERVAL_SECONDS": "0.5",
    "ENGRAM_REQUEUE_AFTER_SECONDS": "1",
    "ENGRAM_CLAIM_SECONDS": "10",
    "ENGRAM_RETRY_BASE_SECONDS": "0.2",
    "ENGRAM_BROKER_HEARTBEAT_MS": "5000",
    "ENGRAM_LOG_LEVEL": "INFO",
}


def served_openapi() -> dict[str, Any]:
    """The OpenAPI document, from an app that is never started (building one opens nothing)."""
    offline = Settings.from_env(
        {
            "ENGRAM_HOME": tempfile.gettempdir(),
            "ENGRAM_DATABASE_URL": "postgresql://offline.invalid/engram",
            "ENGRAM_REDIS_URL": "redis://offline.invalid:6379",
        }
    )
    # never entered, so the lifespan never runs: the document needs neither Postgres nor Redis
    answer = TestClient(create_app(offline)).get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


class Servers(msgspec.Struct, frozen=True):
    database_url: str  # the owner's: migrations, and tests checking what is really stored
    app_url: str  # engram_app's, as the API and worker connect: row-level security applies
    redis_url: str
    home: Path


def prepare_database(database_url: str, postgres: EmbeddedPostgres | None) -> str:
    """Migrate, let engram_app log in, and return its URL (the owner's for external servers)."""
    schema.upgrade(database_url)
    if postgres is None:
        return os.environ.get("ENGRAM_TEST_APP_DATABASE_URL", database_url)
    schema.enable_app_login(database_url)
    return postgres.url_for(schema.APP_ROLE)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    home = tmp_path_factory.mktemp("engram-home")
    external_db = os.environ.get("ENGRAM_TEST_DATABASE_URL")
    external_redis = os.environ.get("ENGRAM_TEST_REDIS_URL")
    postgres = None if external_db else EmbeddedPostgres(home)
    redis = None if external_redis else EmbeddedRedis(home)
    try:
        database_url = external_db or postgres.start()  # type: ignore[union-attr]
        redis_url = external_redis or redis.start()  # type: ignore[union-attr]
        app_url = prepare_database(database_url, postgres)
        yield Servers(database_url=database_url, app_url=app_url, redis_url=redis_url, home=home)
    finally:
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()


def api_env(servers: Servers) -> dict[str, str]:
    """The environment of the tests' API (add to it for other configurations)."""
    return {
        "ENGRAM_HOME": str(servers.home),
        "ENGRAM_DATABASE_URL": servers.app_url,
        "ENGRAM_REDIS_URL": servers.redis_url,
        "ENGRAM_ADMIN_KEY": ADMIN_KEY,
        "ENGRAM_WAIT_TIMEOUT_SECONDS": "60",
        **WORKER_ENV,
    }


@pytest.fixture(scope="session")
def settings(servers: Servers) -> Settings:
    return Settings.from_env(api_env(servers))


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    model = LocalEmbedder(MINILM_384)
    model.load()
    return model


@pytest.fixture(scope="session")
def worker(settings: Settings, servers: Servers) -> Iterator[subprocess.Popen[bytes]]:
    """A real dramatiq worker process, as `engram worker` runs it."""
    process = start_worker(servers)
    yield process
    stop_process(process)


def start_worker(servers: Servers, **extra_env: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENGRAM_HOME": str(servers.home),
        "ENGRAM_DATABASE_URL": servers.app_url,
        "ENGRAM_REDIS_URL": servers.redis_url,
        **WORKER_ENV,
        **extra_env,
    }
    log = open(servers.home / f"worker-{uuid.uuid4().hex[:6]}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "service.ops.cli", "worker"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while b"Worker process is ready" not in Path(log.name).read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("worker did not start:\n" + Path(log.name).read_text()[-3000:])
        time.sleep(0.2)
    return process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_api(servers: Servers, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    """``engram api`` as a process on a free port: (process, its URL)."""
    port = free_port()
    env = {**os.environ, **api_env(servers), "ENGRAM_PORT": str(port), **extra_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "service.ops.cli", "api"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{url}/healthz"), timeout=120, what="the API to start")
    return process, url


@pytest.fixture(scope="module")
def api_url(servers: Servers) -> Iterator[str]:
    """A real ``engram api`` process for the module's tests: its URL."""
    process, url = start_api(servers)
    try:
        yield url
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def client(settings: Settings, embedder: Embedder) -> Iterator[TestClient[Any]]:
    """The API in-process, over the real servers (the worker is a separate process)."""
    app = create_app(settings, embedders={MINILM_384.name: embedder})
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def db(servers: Servers) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection, to check what the database really holds."""
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        yield conn


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def parts_of(token: str) -> tuple[str, str]:
    """(lookup, secret) of a key: a secret may hold underscores, so the key format parses it."""
    parsed = keys.parse_token(token)
    assert parsed, token
    return parsed


@pytest.fixture
def new_user(client: TestClient[Any]) -> Callable[[], tuple[str, dict[str, str]]]:
    """Make a fresh user id and a key scoped to it: (user_id, auth headers)."""

    def make() -> tuple[str, dict[str, str]]:
        user_id = f"user-{uuid.uuid4().hex[:12]}"
        answer = client.post("/v1/keys", json={"user_id": user_id}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        return user_id, {"Authorization": f"Bearer {answer.json()['key']}"}

    return make


def add_memories(
    client: TestClient[Any],
    user_id: str,
    headers: dict[str, str],
    contents: list[str],
    **extra: Any,
) -> list[dict[str, Any]]:
    """Add memories and wait until they are embedded; return them."""
    body = {"memories": [{"content": c, **extra} for c in contents], "wait": True}
    answer = client.post(f"/v1/users/{user_id}/memories", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    memories: list[dict[str, Any]] = answer.json()["memories"]
    assert all(m["status"] == "ready" for m in memories), memories
    return memories


def search(
    client: TestClient[Any], user_id: str, headers: dict[str, str], **body: Any
) -> list[dict[str, Any]]:
    answer = client.post(f"/v1/users/{user_id}/search", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


def wait_until(condition: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)
