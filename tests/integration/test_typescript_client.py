"""The TypeScript client (clients/typescript, npm package ``@engram/client``): its own tests,
run with Node's test runner (``npm test``) against a real ``engram api`` process and a real
worker. They cover every operation, the typed errors, two users' keys, waits, paging, aborts,
the chat-app example on the AI SDK, and that src/schema.ts is what this API's OpenAPI
document generates. A second API with a small rate limit serves the 429 test, a third, on a
database of its own, the vectors of an external memory space. ``make install``
runs ``npm ci`` there; this module runs it too when ``node_modules`` is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.databases import servers_of_their_own
from support.processes import ADMIN_KEY, REPO, Servers, start_api, stop_process

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.timeout(900)]

PACKAGE = REPO / "clients" / "typescript"
EXTERNAL = {"ENGRAM_EXTERNAL_SPACES": "ts-client-4:4", "ENGRAM_MEMORY_SPACE": "ts-client-4"}


@pytest.fixture(scope="module")
def limited_api_url(servers: Servers) -> Iterator[str]:
    """An API whose keys may spend 20 units a minute (below 50, so counted exactly)."""
    process, url = start_api(servers, ENGRAM_RATE_LIMIT_PER_MINUTE="20")
    try:
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def external_api_url(servers: Servers) -> Iterator[str]:
    """An API whose memory space is external (the client sends 4-number vectors), on a
    database and Redis database of its own, its table made by ``engram migrate``."""
    with servers_of_their_own(servers, redis=13) as own:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env |= {"ENGRAM_HOME": str(own.home), "ENGRAM_DATABASE_URL": own.database_url}
        migrate = subprocess.run(
            [sys.executable, "-m", "service.ops.cli", "migrate"],
            env=env | EXTERNAL,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        process, url = start_api(own, **EXTERNAL)
        try:
            yield url
        finally:
            stop_process(process)


def test_the_typescript_client_passes_its_tests_against_the_api(
    api_url: str, limited_api_url: str, external_api_url: str
) -> None:
    npm = shutil.which("npm")
    assert npm, "npm is not on PATH: the TypeScript client's tests need Node 20+ and npm"
    if not (PACKAGE / "node_modules").is_dir():  # make install runs it; pytest alone may not
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PACKAGE,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}{installed.stderr}"
    env = {
        **os.environ,
        "ENGRAM_URL": api_url,
        "ENGRAM_ADMIN_KEY": ADMIN_KEY,
        "ENGRAM_LIMITED_URL": limited_api_url,
        "ENGRAM_EXTERNAL_URL": external_api_url,
        "ENGRAM_TEST_NO_SKIP": "1",
        "NO_COLOR": "1",
    }
    env.pop("ENGRAM_API_KEY", None)  # the tests make their own keys
    run = subprocess.run(
        [npm, "test", "--silent"],
        cwd=PACKAGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"npm test failed ({run.returncode}):\n{output}"
    assert re.search(r"\bfail 0\b", output), output
    assert re.search(r"\bskipped 0\b", output), f"a test was skipped:\n{output}"
