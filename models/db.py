"""Database access: the pool factory and connection set-up (psycopg 3, pgvector)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Concatenate, ParamSpec, TypeVar

import psycopg
from pgvector.psycopg import register_vector_async
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
    try:
        await register_vector_async(conn)
    except psycopg.ProgrammingError:
        # The schema is not migrated yet (no vector type): /readyz says so.
        log.warning("pgvector type not found: run `engram migrate`")


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
    return await _retrying(pool, scope, False, work, *args, **kwargs)


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
    return await _retrying(pool, scope, True, work, *args, **kwargs)


async def _retrying(
    pool: AsyncConnectionPool,
    scope: str,
    pipelined: bool,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            async with pool.connection() as conn, AsyncExitStack() as stack:
                if pipelined:
                    await stack.enter_async_context(conn.pipeline())
                await stack.enter_async_context(conn.transaction())
                await set_scope(conn, scope)
                return await work(conn, *args, **kwargs)
        except CONNECTION_ERRORS as exc:
            if attempt == RETRY_ATTEMPTS:
                raise
            delay = min(RETRY_BASE_SECONDS * 4 ** (attempt - 1), RETRY_MAX_SECONDS)
            log.warning("database connection error (%s); retry %d in %.1fs", exc, attempt, delay)
            # the server may have restarted: replace every idle connection it broke
            await pool.check()
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def set_scope(conn: psycopg.AsyncConnection, scope: str) -> None:
    """Admit rows of ``scope`` for the rest of the current transaction."""
    all_users = scope == ALL_USERS
    await conn.execute(
        "SELECT set_config('engram.user_id', %s, true), set_config('engram.all_users', %s, true)",
        ["" if all_users else scope, "on" if all_users else "off"],
    )


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
