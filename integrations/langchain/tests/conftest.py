"""The suite's real servers (``support.fixtures``, from tests/support), and an Engram stack of
each module's own on them, made ready as an operator would: a fresh database migrated by
``engram migrate`` with ``ENGRAM_EXTERNAL_SPACES`` declaring the space the LangChain tests
embed into, a Redis database of its own, an ``engram worker`` and an ``engram api``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from engram_client import Engram
from support.databases import servers_of_their_own
from support.processes import (
    ADMIN_KEY,
    REPO,
    Servers,
    start_api,
    start_worker,
    stop_process,
)

pytest_plugins = ["support.fixtures"]

# DeterministicFakeEmbedding of langchain-tests' standard suites has 6 dimensions
EXTERNAL_SPACE = "langchain-6"
SPACES = {"ENGRAM_EXTERNAL_SPACES": f"{EXTERNAL_SPACE}:6"}
REDIS_DB = 12  # the Redis database of this folder's stacks (other modules use 4, 5, 11)


@pytest.fixture(scope="module")
def stack(servers: Servers) -> Iterator[Servers]:
    """The servers, seen through a fresh database whose external tables are made."""
    with servers_of_their_own(servers, redis=REDIS_DB) as own:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env |= {"ENGRAM_HOME": str(own.home), "ENGRAM_DATABASE_URL": own.database_url, **SPACES}
        done = subprocess.run(
            [sys.executable, "-m", "service.ops.cli", "migrate"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        yield own


@pytest.fixture(scope="module")
def engram_url(stack: Servers) -> Iterator[str]:
    """A real ``engram api``, with a real ``engram worker`` embedding what it is sent."""
    worker = start_worker(stack, **SPACES)
    try:
        process, url = start_api(stack, **SPACES)
        try:
            yield url
        finally:
            stop_process(process)
    finally:
        stop_process(worker)


@pytest.fixture(scope="session")
def external_space() -> str:
    """The external space of ``engram_url``: 6 dimensions."""
    return EXTERNAL_SPACE


@pytest.fixture(scope="module")
def admin(engram_url: str) -> Iterator[Engram]:
    with Engram(engram_url, ADMIN_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def new_user(admin: Engram) -> Callable[[], tuple[str, str]]:
    """A fresh user and a key that may act on it alone: (user_id, key)."""

    def make() -> tuple[str, str]:
        user_id = f"lc-{uuid.uuid4().hex[:12]}"
        return user_id, admin.create_key(user_id).key

    return make
