"""Connection-class errors are retried with back-off; errors of the SQL itself never are."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import errors

from models.db import ALL_USERS, create_pool, run_scoped


def attempts_until_raised(database_url: str, error: Exception) -> int:
    calls = 0

    async def work(conn: psycopg.AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("SELECT 1")
        raise error

    async def main() -> None:
        pool = create_pool(database_url, min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            await run_scoped(pool, ALL_USERS, work)
        finally:
            await pool.close()

    with pytest.raises(type(error)):
        asyncio.run(main())
    return calls


def test_connection_errors_are_retried_three_times(servers):
    assert attempts_until_raised(servers.database_url, psycopg.OperationalError("reset")) == 3


@pytest.mark.parametrize(
    "error",
    [errors.UniqueViolation("duplicate"), errors.SyntaxError("oops"), errors.CheckViolation("no")],
)
def test_sql_errors_are_not_retried(servers, error):
    assert attempts_until_raised(servers.database_url, error) == 1


def test_a_real_lost_connection_is_retried_on_a_fresh_one(servers):
    """The first attempt's backend is terminated mid-work; the retry gets a new connection."""
    seen: list[int] = []

    async def work(conn: psycopg.AsyncConnection) -> int:
        pid = conn.info.backend_pid
        seen.append(pid)
        if len(seen) == 1:
            async with await psycopg.AsyncConnection.connect(servers.database_url) as other:
                await other.execute("SELECT pg_terminate_backend(%s)", [pid])
        cur = await conn.execute("SELECT 42")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def main() -> int:
        pool = create_pool(servers.database_url, min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            return await run_scoped(pool, ALL_USERS, work)
        finally:
            await pool.close()

    assert asyncio.run(main()) == 42
    assert len(seen) == 2 and seen[0] != seen[1]
