"""A real PgBouncer (Debian's ``pgbouncer`` package) in transaction mode in front of the
tests' embedded PostgreSQL, on a TCP port of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from service.ops.embedded import EmbeddedPostgres
from support.processes import free_port, wait_until

PGBOUNCER = Path("/usr/sbin/pgbouncer")


def pgbouncer_version() -> tuple[int, ...] | None:
    """The installed PgBouncer's version, or None when there is none."""
    if not PGBOUNCER.exists():
        return None
    first = subprocess.run(
        [str(PGBOUNCER), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()
    return tuple(int(part) for part in first[1].split("."))


class PgBouncer:
    """``pool_mode = transaction``; ``databases`` maps each name PgBouncer offers to a
    database of the server and the server connections it may hold."""

    def __init__(self, home: Path, databases: dict[str, tuple[str, int]]) -> None:
        self.server = EmbeddedPostgres(home)
        self.dir = Path(tempfile.mkdtemp(prefix="engram-pgbouncer-"))
        self.port = free_port()
        self.databases = databases
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = self.server._run_as  # PgBouncer refuses to run as root

    def url_for(self, user: str, name: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        lines = ["[databases]"]
        for name, (database, size) in self.databases.items():
            lines.append(f"{name} = host={self.server.sockets} dbname={database} pool_size={size}")
        lines += [
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.dir / 'users.txt'}",
            "pool_mode = transaction",
            "max_client_conn = 500",
            f"logfile = {self.dir / 'pgbouncer.log'}",
            f"pidfile = {self.dir / 'pgbouncer.pid'}",
        ]
        (self.dir / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        (self.dir / "users.txt").write_text('"engram_app" ""\n"postgres" ""\n')
        if self._run_as is not None:
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        self._process = subprocess.Popen(
            [str(PGBOUNCER), str(self.dir / "pgbouncer.ini")],
            user=self._run_as.pw_uid if self._run_as else None,
            group=self._run_as.pw_gid if self._run_as else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        name = next(iter(self.databases))
        wait_until(lambda: self._answers(name), timeout=30, what="PgBouncer to start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _answers(self, name: str) -> bool:
        if self._process is not None and self._process.poll() is not None:
            log = self.dir / "pgbouncer.log"
            raise RuntimeError(f"pgbouncer exited: {log.read_text() if log.exists() else ''}")
        try:
            with psycopg.connect(self.url_for("engram_app", name), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False
