"""A real streaming replica of the tests' embedded PostgreSQL, made with its own binaries:
``pg_basebackup -R`` into a new data directory, started as a hot standby on a socket of its
own. Replay can be paused, and the replica stopped and started again."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from service.ops.embedded import EmbeddedPostgres, postgres_bin
from support.processes import free_port


class StreamingReplica:
    """A hot standby of the embedded server of ``home``, streaming from it."""

    def __init__(self, home: Path) -> None:
        self.primary = EmbeddedPostgres(home)
        self.data = home / "replica"
        self.sockets = Path(tempfile.mkdtemp(prefix="engram-replica-"))
        self.port = free_port()
        self._run_as = self.primary._run_as  # the system user the primary runs as

    def url_for(self, user: str, database: str) -> str:
        return f"postgresql://{user}@/{database}?host={self.sockets}&port={self.port}"

    @property
    def superuser_url(self) -> str:
        return self.url_for("postgres", "postgres")

    def create(self) -> None:
        """Copy the primary (streaming its WAL meanwhile) and write the standby's
        configuration (``-R``: ``standby.signal`` and ``primary_conninfo``)."""
        self.data.mkdir(mode=0o700)
        if self._run_as is not None:  # PostgreSQL runs as its own system user under root
            for path in (self.sockets, self.data):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        self._run(
            "pg_basebackup",
            f"--dbname=host={self.primary.sockets} user=postgres",
            f"--pgdata={self.data}",
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            str(self.data / "server.log"),
            "-o",
            f"-c listen_addresses='' -c unix_socket_directories='{self.sockets}' "
            f"-c port={self.port} -c hot_standby=on -c shared_buffers=64MB",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "stop", "-w", "-t", "60", "-m", "fast")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.sockets, ignore_errors=True)

    def pause_replay(self) -> None:
        self._execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self._execute("SELECT pg_wal_replay_resume()")

    def catch_up(self, timeout: float = 30) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert target is not None
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.superuser_url, autocommit=True) as conn:
            while True:
                found = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target[0]]
                ).fetchone()
                if found is not None and found[0]:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError("the replica did not catch up")
                time.sleep(0.05)

    def _execute(self, query: str) -> None:
        with psycopg.connect(self.superuser_url, autocommit=True) as conn:
            conn.execute(query)

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(postgres_bin() / program), *args],
            user=self._run_as.pw_uid if self._run_as else None,
            group=self._run_as.pw_gid if self._run_as else None,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            log = self.data / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed: {result.stderr.strip()}\n{tail}")
