"""Connections: the pool factory and how each new connection is set up (psycopg 3, pgvector)."""

from __future__ import annotations

import functools
import json
import logging
import weakref
from typing import Any

import msgspec
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.rows import scalar_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from models.db.rows import fetch_one

log = logging.getLogger("engram.db")

# What each connection sets at the start of every transaction, with the user's scope
# (``models.db.scope``): transaction-local, so that behind a pooler in transaction mode
# (PgBouncer) they neither go missing nor reach other clients of the server connection.
_TRANSACTION_SETTINGS: weakref.WeakKeyDictionary[psycopg.AsyncConnection, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)

# The GIN indexes' pending lists (full text, metadata) are merged into the index whenever
# a write grows them past this: short, so no search reads a long list (a bulk write raises
# it for its own transaction and merges its entries at once, ``merge_pending_entries``).
PENDING_LIST_KB = 64

# Errors that mean "the server is unreachable right now", never "your SQL is wrong".
CONNECTION_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError,)


def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = "engram",
    timeout: float = 10,
    prepare_threshold: int | None = 5,
    statement_timeout: float | None = None,
    text_config: str = "english",
) -> AsyncConnectionPool:
    """A closed pool: open it with ``await pool.open()`` where its lifetime begins.

    ``prepare_threshold`` None never prepares statements on the server (PgBouncer < 1.21).
    ``statement_timeout`` (seconds) ends any statement that runs longer, so that no request
    holds a connection indefinitely. ``text_config`` is the text-search configuration new
    memories and chunks are indexed in (the column's default reads it).
    """
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        timeout=timeout,
        open=False,
        configure=functools.partial(
            _configure, statement_timeout=statement_timeout, text_config=text_config
        ),
        # No check on every checkout (a round trip per transaction): a connection found
        # broken makes ``run_scoped`` check the whole pool, then retry.
        kwargs={"autocommit": True, "connect_timeout": 5, "prepare_threshold": prepare_threshold},
    )


async def _configure(
    conn: psycopg.AsyncConnection, *, statement_timeout: float | None, text_config: str
) -> None:
    # PgBouncer keeps TimeZone for each client and restores it on the server connection
    await conn.execute("SET TIME ZONE 'UTC'")
    settings = {
        "engram.text_config": text_config,
        "gin_pending_list_limit": str(PENDING_LIST_KB),
    }
    if statement_timeout is not None:
        settings["statement_timeout"] = str(int(statement_timeout * 1000))
    _TRANSACTION_SETTINGS[conn] = settings
    set_json_loads(load_json, conn)
    # json and jsonb parameters written by msgspec, in a fraction of json.dumps's time
    set_json_dumps(msgspec.json.encode, conn)
    try:
        await register_vector_async(conn)
    except psycopg.ProgrammingError:
        # The schema is not migrated yet (no vector type): /readyz says so.
        log.warning("pgvector type not found: run `engram migrate`")


def transaction_settings(conn: psycopg.AsyncConnection) -> dict[str, str]:
    """What ``conn``'s pool sets in each of its transactions: the text-search configuration
    new items are indexed in, the GIN pending lists' limit, and the statement timeout."""
    return _TRANSACTION_SETTINGS.get(conn, {})


def load_json(data: str | bytes) -> Any:
    """json and jsonb values as ``json.loads`` reads them, in a third of its time (msgspec).
    The one case msgspec refuses, a number beyond a float's range, goes to ``json.loads``
    (which reads it as infinity)."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


async def bypasses_row_security(conn: psycopg.AsyncConnection) -> bool:
    """True if this connection's role escapes row-level security (superuser, BYPASSRLS, owner)."""
    bypasses = await fetch_one(
        conn,
        scalar_row,
        """
        SELECT r.rolsuper OR r.rolbypassrls OR pg_has_role(current_user, t.tableowner, 'USAGE')
        FROM pg_roles r, pg_tables t
        WHERE r.rolname = current_user AND t.schemaname = 'public' AND t.tablename = 'memories'
        """,
    )
    return bool(bypasses)
