"""Database access: the pool factory and connection set-up (psycopg 3, pgvector)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
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

P = ParamSpec("P")
T = TypeVar("T")


def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, name: str = "engram", timeout: float = 10
) -> AsyncConnectionPool:
    """A closed pool: open it with ``await pool.open()`` where its lifetime begins."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        timeout=timeout,
        open=False,
        configure=_configure,
        check=AsyncConnectionPool.check_connection,
        kwargs={"autocommit": True, "connect_timeout": 5},
    )


async def _configure(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")
    try:
        await register_vector_async(conn)
    except psycopg.ProgrammingError:
        # The schema is not migrated yet (no vector type): /readyz says so.
        log.warning("pgvector type not found: run `engram migrate`")


async def run_with_retry(
    pool: AsyncConnectionPool,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``work(conn, ...)`` on a pooled connection, retrying connection-class errors.

    Only for idempotent work: a retry may repeat a statement whose answer was lost. Errors
    of the SQL itself (constraints, syntax) are never retried. Back-off 0.1 s, 0.4 s; at
    most 3 attempts, then the error goes up (the HTTP edge answers 503).
    """
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            async with pool.connection() as conn:
                return await work(conn, *args, **kwargs)
        except CONNECTION_ERRORS as exc:
            if attempt == RETRY_ATTEMPTS:
                raise
            delay = min(RETRY_BASE_SECONDS * 4 ** (attempt - 1), RETRY_MAX_SECONDS)
            log.warning("database connection error (%s); retry %d in %.1fs", exc, attempt, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
