"""``engram run``: embedded servers if needed, migrations, then the API and one worker.

Children run in sessions of their own, so a Ctrl-C reaches only this supervisor, which
stops them in order: API and worker first (they drain), then Redis, then PostgreSQL.
Each child gets SIGTERM from the kernel if the supervisor dies, so nothing outlives a kill.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from models.db import schema
from models.embedding.tables import bring_schema_up_to_date
from models.errors import ConfigError
from models.observe import metrics
from models.settings import Settings
from models.store import keys
from service.ops.embedded import EmbeddedPostgres, EmbeddedRedis

log = logging.getLogger("engram.run")

_PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_SECONDS = 60


def run_everything(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM, or until a child dies; return the exit code."""
    settings.home.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with _home_lock(settings.home), _servers(settings) as (admin_url, database_url, redis_url):
        bring_schema_up_to_date(admin_url, settings)
        if settings.database.url is None or settings.database.app_password:
            schema.enable_app_login(admin_url, password=settings.database.app_password)
        keys.resolve_admin_key(settings.server.admin_key, settings.admin_key_file)
        # API and worker processes write their metrics here and the API's /metrics adds
        # them up; what earlier processes left is gone (their counters start again at 0)
        metrics_dir = settings.home / "metrics"
        metrics.reset_multiprocess_dir(metrics_dir)
        env = {
            **os.environ,
            "ENGRAM_DATABASE_URL": database_url,
            "ENGRAM_REDIS_URL": redis_url,
            "ENGRAM_HOME": str(settings.home),
            metrics.MULTIPROC_ENV: str(metrics_dir),
        }
        children = [
            _spawn([sys.executable, "-m", "service.ops.cli", "api"], env),
            _spawn([sys.executable, "-m", "service.ops.cli", "worker"], env),
        ]
        try:
            _announce(settings, children, stop)
            while not stop.wait(0.5):
                if any(child.poll() is not None for child in children):
                    log.error("a child process exited; stopping everything")
                    return 1
            return 0
        finally:
            _stop_children(children)


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """One ``engram run`` per home. An flock dies with its process: never a stale lock."""
    with open(home / "engram.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another `engram run` is using {home}") from None
        handle.write(str(os.getpid()))
        handle.flush()
        yield


@contextlib.contextmanager
def _servers(settings: Settings) -> Iterator[tuple[str, str, str]]:
    """(admin URL, application URL, Redis URL): configured, or of embedded servers."""
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        database_url = settings.database.url
        admin_url = settings.database.admin_url or database_url
        if database_url is None:
            postgres = EmbeddedPostgres(
                settings.home, shared_buffers=settings.database.embedded_shared_buffers
            )
            started.append(postgres)
            admin_url = postgres.start()
            database_url = postgres.url_for(schema.APP_ROLE)
            log.info("embedded PostgreSQL with pgvector: data in %s", postgres.data)
        redis_url = settings.broker.url
        if redis_url is None:
            redis = EmbeddedRedis(settings.home)
            started.append(redis)
            redis_url = redis.start()
            log.info("embedded Redis on %s", redis.socket)
        assert admin_url is not None
        yield admin_url, database_url, redis_url
    finally:
        for server in reversed(started):
            try:
                server.stop()
            except Exception:
                log.exception("could not stop %s", type(server).__name__)


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _announce(
    settings: Settings, children: list[subprocess.Popen[bytes]], stop: threading.Event
) -> None:
    url = f"http://{settings.server.host}:{settings.server.port}"
    while not stop.is_set() and all(c.poll() is None for c in children):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        time.sleep(0.2)
    else:
        return
    where = "ENGRAM_ADMIN_KEY" if settings.server.admin_key else str(settings.admin_key_file)
    _say(
        settings,
        f"Engram is running at {url} (console: {url}/console/, OpenAPI docs: {url}/schema)",
    )
    _say(settings, f"Admin key: {where}. Stop with Ctrl-C.")


def _say(settings: Settings, line: str) -> None:
    """A line for people at a terminal; with JSON logs, a log line like every other."""
    if settings.logging.format == "json":
        log.info(line)
        return
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop in time; killing it", child.pid)
            child.kill()
            child.wait()
