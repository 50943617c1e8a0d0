"""Connection-class errors are retried with back-off; errors of the SQL itself never are."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import errors

from models.db.pool import create_pool
from models.db.scope import ALL_USERS, run_scoped


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


def test_a_restarted_server_costs_one_retry_not_one_per_pooled_connection(servers):
    """Every idle connection of the pool dies at once (as in a server restart): the first
    broken one makes the pool check the rest, so the retry runs on a fresh connection."""
    calls = 0

    async def work(conn: psycopg.AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        cur = await conn.execute("SELECT 7")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    url = servers.database_url + ("&" if "?" in servers.database_url else "?")
    url += "application_name=engram-restart-test"

    async def main() -> int:
        pool = create_pool(url, min_size=3, max_size=3)
        await pool.open(wait=True)
        try:
            async with await psycopg.AsyncConnection.connect(
                servers.database_url, autocommit=True
            ) as other:
                cur = await other.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'engram-restart-test'"
                )
                row = await cur.fetchone()
                assert row is not None and row[0] == 3
            return await run_scoped(pool, ALL_USERS, work)
        finally:
            await pool.close()

    assert asyncio.run(main()) == 7
    assert calls <= 2


def test_statements_are_never_prepared_when_the_threshold_is_off(servers):
    async def main() -> tuple[int | None, int]:
        pool = create_pool(servers.database_url, max_size=1, prepare_threshold=None)
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                for _ in range(10):
                    await conn.execute("SELECT %s::int", [1])
                cur = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
                row = await cur.fetchone()
                return conn.prepare_threshold, int(row[0]) if row else -1
        finally:
            await pool.close()

    assert asyncio.run(main()) == (None, 0)
