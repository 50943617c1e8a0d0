"""Database access: the pool factory and connection set-up (psycopg 3, pgvector)."""

from __future__ import annotations

import logging

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("engram.db")

# Errors that mean "the server is unreachable right now", never "your SQL is wrong".
CONNECTION_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError,)


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
