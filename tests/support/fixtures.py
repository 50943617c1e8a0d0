"""The suite's fixtures, as a pytest plugin: real servers, the real model, a real worker,
the API in-process and as a process, a direct database connection, and fresh users."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from models.embedding.local import LocalEmbedder
from models.embedding.provider import Embedder
from models.embedding.spaces import MINILM_384
from models.settings import Settings
from service.http.app import create_app
from service.ops.embedded import EmbeddedPostgres, EmbeddedRedis
from support.api import ADMIN
from support.databases import Database, fresh_database
from support.processes import (
    Servers,
    api_env,
    prepare_database,
    start_api,
    start_worker,
    stop_process,
)


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


@pytest.fixture(scope="module")
def api_url(servers: Servers) -> Iterator[str]:
    """A real ``engram api`` process for the module's tests: its URL."""
    process, url = start_api(servers)
    try:
        yield url
    finally:
        stop_process(process)


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


@pytest.fixture
def quiet_db(servers: Servers) -> Iterator[tuple[Database, psycopg.Connection[Any]]]:
    """A fresh database no worker and no other test uses, and a connection to it as its
    owner: for tests that claim jobs by hand and must see only their own."""
    with (
        fresh_database(servers) as database,
        psycopg.connect(database.owner_url, autocommit=True) as conn,
    ):
        yield database, conn


@pytest.fixture
def new_user(client: TestClient[Any]) -> Callable[[], tuple[str, dict[str, str]]]:
    """Make a fresh user id and a key scoped to it: (user_id, auth headers)."""

    def make() -> tuple[str, dict[str, str]]:
        user_id = f"user-{uuid.uuid4().hex[:12]}"
        answer = client.post("/v1/keys", json={"user_id": user_id}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        return user_id, {"Authorization": f"Bearer {answer.json()['key']}"}

    return make
