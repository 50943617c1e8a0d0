"""Database access: the pool factory and connection set-up (psycopg 3, pgvector)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.rows import RowFactory, tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("engram.db")

# Errors that mean "the server is unreachable right now", never "your SQL is wrong".
CONNECTION_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError,)
RETRY_ATTEMPTS = 3
RETRY_BASE_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0
# The scope of deliberate cross-user work; "*" can never be a user id.
ALL_USERS = "*"

P = ParamSpec("P")
T = TypeVar("T")


def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = "engram",
    timeout: float = 10,
    prepare_threshold: int | None = 5,
) -> AsyncConnectionPool:
    """A closed pool: open it with ``await pool.open()`` where its lifetime begins.

    ``prepare_threshold`` None never prepares statements on the server (PgBouncer < 1.21).
    """
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        timeout=timeout,
        open=False,
        configure=_configure,
        # No check on every checkout (a round trip per transaction): a connection found
        # broken makes ``run_scoped`` check the whole pool, then retry.
        kwargs={"autocommit": True, "connect_timeout": 5, "prepare_threshold": prepare_threshold},
    )


async def _configure(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")
    set_json_loads(load_json, conn)
    try:
        await register_vector_async(conn)
    except psycopg.ProgrammingError:
        # The schema is not migrated yet (no vector type): /readyz says so.
        log.warning("pgvector type not found: run `engram migrate`")


def load_json(data: str | bytes) -> Any:
    """json and jsonb values as ``json.loads`` reads them, in a third of its time (msgspec).
    The one case msgspec refuses, a number beyond a float's range, goes to ``json.loads``
    (which reads it as infinity)."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


async def run_scoped(
    pool: AsyncConnectionPool,
    scope: str,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``work(conn, ...)`` in one transaction scoped to a user, retrying lost connections.

    ``scope`` is a user id, or ``ALL_USERS`` for the few deliberate cross-user operations
    (the worker's claims, admin routes). Row-level security admits only rows of that
    scope, so a query that forgets its user condition still sees nobody else's data. The
    scope is set with ``set_config(..., true)``: it ends with the transaction and never
    travels to the next user of a pooled connection.

    Only for idempotent work: a retry may repeat a statement whose answer was lost. Errors
    of the SQL itself (constraints, syntax) are never retried. Back-off 0.1 s, 0.4 s; at
    most 3 attempts, then the error goes up (the HTTP edge answers 503).
    """
    return await _retrying(
        pool, lambda conn: _in_transaction(conn, scope, False, work, *args, **kwargs)
    )


async def run_pipelined(
    pool: AsyncConnectionPool,
    scope: str,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``run_scoped`` in pipeline mode: statements go out without waiting for the previous
    answer, so ``BEGIN``, the scope and the first query share one round trip, and writes
    whose results are not read share the ``COMMIT``'s. For the hot paths (authentication,
    search); their work must not use server-side cursors or COPY, and sees an error only
    when it reads a result or commits."""
    return await _retrying(
        pool, lambda conn: _in_transaction(conn, scope, True, work, *args, **kwargs)
    )


@dataclass(frozen=True)
class Statement:
    """One statement of a ``read_batch``; ``rows`` makes its rows (None: not read)."""

    query: str
    params: dict[str, Any] | Sequence[Any] | None = None
    rows: RowFactory[Any] | None = tuple_row


async def read_batch(
    pool: AsyncConnectionPool,
    scope: str,
    statements: Sequence[Statement],
    settings: Mapping[str, str] | None = None,
) -> list[list[Any]]:
    """Run read-only ``statements`` scoped to a user in one round trip; each one's rows.

    The scope (with any ``settings``, set in the same statement) and the statements go out
    in pipeline mode, then one Sync: the server runs everything before a Sync as one
    implicit transaction, so the scope and settings (``set_config(..., true)``) cover
    exactly these statements and end with them, like ``run_scoped``'s. Only for statements
    that read; lost connections are retried.
    """

    async def batch(conn: psycopg.AsyncConnection) -> list[list[Any]]:
        async with conn.pipeline():
            await set_scope(conn, scope, settings)
            cursors = await _send(conn, statements)
        # leaving the pipeline sent the Sync and received every answer
        return await _rows(cursors)

    return await _retrying(pool, batch)


async def on_connection(
    conn: psycopg.AsyncConnection,
    statements: Sequence[Statement],
    settings: Mapping[str, str] | None = None,
) -> list[list[Any]]:
    """``read_batch`` in the caller's transaction, for work that reads more around it (the
    settings last to the end of that transaction)."""
    if settings:
        await conn.execute(*set_configs(settings))
    return await _rows(await _send(conn, statements))


async def _send(
    conn: psycopg.AsyncConnection, statements: Sequence[Statement]
) -> list[psycopg.AsyncCursor[Any] | None]:
    """Execute each statement; the cursor of each one whose rows are read."""
    cursors: list[psycopg.AsyncCursor[Any] | None] = []
    for statement in statements:
        cursor = conn.cursor(row_factory=statement.rows or tuple_row)
        await cursor.execute(statement.query, statement.params)
        cursors.append(cursor if statement.rows else None)
    return cursors


async def _rows(cursors: list[psycopg.AsyncCursor[Any] | None]) -> list[list[Any]]:
    return [await cursor.fetchall() if cursor else [] for cursor in cursors]


async def _in_transaction(
    conn: psycopg.AsyncConnection,
    scope: str,
    pipelined: bool,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    async with AsyncExitStack() as stack:
        if pipelined:
            await stack.enter_async_context(conn.pipeline())
        await stack.enter_async_context(conn.transaction())
        await set_scope(conn, scope)
        return await work(conn, *args, **kwargs)


async def _retrying(
    pool: AsyncConnectionPool, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]
) -> T:
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            async with pool.connection() as conn:
                return await work(conn)
        except CONNECTION_ERRORS as exc:
            if attempt == RETRY_ATTEMPTS:
                raise
            delay = min(RETRY_BASE_SECONDS * 4 ** (attempt - 1), RETRY_MAX_SECONDS)
            log.warning("database connection error (%s); retry %d in %.1fs", exc, attempt, delay)
            # the server may have restarted: replace every idle connection it broke
            await pool.check()
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def set_scope(
    conn: psycopg.AsyncConnection, scope: str, settings: Mapping[str, str] | None = None
) -> None:
    """Admit rows of ``scope`` for the rest of the current transaction; ``settings``
    (configuration parameters) last as long."""
    all_users = scope == ALL_USERS
    scoped = {
        "engram.user_id": "" if all_users else scope,
        "engram.all_users": "on" if all_users else "off",
    }
    await conn.execute(*set_configs({**scoped, **(settings or {})}))


def set_configs(settings: Mapping[str, str]) -> tuple[str, list[str]]:
    """One statement setting each parameter for the rest of the transaction."""
    calls = ", ".join("set_config(%s, %s, true)" for _ in settings)
    return f"SELECT {calls}", [part for item in settings.items() for part in item]


async def bypasses_row_security(conn: psycopg.AsyncConnection) -> bool:
    """True if this connection's role escapes row-level security (superuser, BYPASSRLS, owner)."""
    cur = await conn.execute(
        """
        SELECT r.rolsuper OR r.rolbypassrls OR pg_has_role(current_user, t.tableowner, 'USAGE')
        FROM pg_roles r, pg_tables t
        WHERE r.rolname = current_user AND t.schemaname = 'public' AND t.tablename = 'memories'
        """
    )
    row = await cur.fetchone()
    return bool(row and row[0])
