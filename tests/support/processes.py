"""The real servers and processes the tests run against: embedded PostgreSQL with pgvector
and Redis (or external ones via ENGRAM_TEST_DATABASE_URL / ENGRAM_TEST_REDIS_URL), `engram
api` and `engram worker` processes, and waiting for them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec

from models.db import schema
from service.ops.embedded import EmbeddedPostgres

ADMIN_KEY = "test-admin-key-" + uuid.uuid4().hex
REPO = Path(__file__).resolve().parents[2]

# Short intervals so fault handling shows within seconds in tests.
WORKER_ENV = {
    "ENGRAM_SWEEP_INTERVAL_SECONDS": "0.5",
    "ENGRAM_REQUEUE_AFTER_SECONDS": "1",
    "ENGRAM_CLAIM_SECONDS": "10",
    "ENGRAM_RETRY_BASE_SECONDS": "0.2",
    "ENGRAM_BROKER_HEARTBEAT_MS": "5000",
    "ENGRAM_LOG_LEVEL": "INFO",
}


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


def api_env(servers: Servers) -> dict[str, str]:
    """The environment of the tests' API (add to it for other configurations)."""
    return {
        "ENGRAM_HOME": str(servers.home),
        "ENGRAM_DATABASE_URL": servers.app_url,
        "ENGRAM_REDIS_URL": servers.redis_url,
        "ENGRAM_ADMIN_KEY": ADMIN_KEY,
        "ENGRAM_WAIT_TIMEOUT_SECONDS": "60",
        # the suite asks for 401s from one address by the hundred: the limit on failed keys
        # per address has its own tests (test_failed_keys.py), which turn it on
        "ENGRAM_FAILED_KEYS_PER_MINUTE": "0",
        # the whole suite acts with one admin key, faster than a client would on a quiet
        # machine: a limit no module reaches (test_ratelimit.py sets its own small ones),
        # with the RateLimit headers still on every answer
        "ENGRAM_RATE_LIMIT_PER_MINUTE": "10000000",
        **WORKER_ENV,
    }


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


def stop_process(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(condition: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)
