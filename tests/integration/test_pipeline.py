"""A batch of statements in one write (models/db/batch.py), through read_batch and alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import AsyncConnectionPool
from support.searching import PREPARED

from models.db.batch import Statement, named, run_batch
from models.db.pool import create_pool
from models.db.scope import read_batch, run_scoped

T = TypeVar("T")


def with_pool(url: str, work: Callable[[AsyncConnectionPool], Awaitable[T]], **options: Any) -> T:
    async def main() -> T:
        pool = create_pool(url, min_size=1, max_size=1, **options)
        await pool.open(wait=True)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


class Probe(NamedTuple):
    probe: str


def test_a_batch_answers_each_statement_with_its_rows(servers):
    statements = [
        Statement("SELECT %(n)s::int + %(n)s::int, %(s)s::text", {"n": 2, "s": "50%"}),
        Statement("SELECT 'a %%', %s::int * 10 FROM generate_series(1, %s)", [4, 2]),
        Statement("SELECT set_config('engram.probe', 'x', true)", rows=None),
        Statement("SELECT current_setting('engram.probe') AS probe", rows=named(Probe)),
        Statement("SELECT 1 WHERE false"),
    ]

    async def work(pool: AsyncConnectionPool) -> list[list[Any]]:
        return await read_batch(pool, "alice", statements)

    assert with_pool(servers.database_url, work) == [
        [(4, "50%")],
        [("a %", 40), ("a %", 40)],
        [],
        [Probe(probe="x")],  # a setting of the batch lasts to its end
        [],
    ]


def test_rows_are_made_for_each_results_own_columns_by_a_maker_made_once(servers):
    made: list[tuple[str, ...]] = []

    def as_dicts(names: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]]:
        made.append(tuple(names))
        return lambda values: dict(zip(names, values, strict=True))

    statements = [
        Statement("SELECT 1 AS a, 2 AS b", rows=as_dicts),
        Statement("SELECT 3 AS b, 4 AS a", rows=as_dicts),
        Statement("SELECT n AS a, -n AS b FROM generate_series(5, 6) n", rows=as_dicts),
    ]

    async def work(pool: AsyncConnectionPool) -> list[list[list[Any]]]:
        return [await read_batch(pool, "alice", statements) for _ in range(3)]

    expected = [[{"a": 1, "b": 2}], [{"b": 3, "a": 4}], [{"a": 5, "b": -5}, {"a": 6, "b": -6}]]
    assert with_pool(servers.database_url, work) == [expected] * 3
    assert made == [("a", "b"), ("b", "a")]  # once per column names, however many results


def test_the_scope_and_settings_cover_the_batch_and_end_with_it(servers):
    scope = Statement(
        "SELECT current_setting('engram.user_id'), current_setting('work_mem'), "
        "current_setting('engram.all_users')"
    )

    async def work(pool: AsyncConnectionPool) -> tuple[list[Any], list[Any]]:
        (inside,) = await read_batch(pool, "alice", [scope], {"work_mem": "7MB"})
        async with pool.connection() as conn:
            cur = await conn.execute(scope.query)
            after = await cur.fetchall()
        return inside, after

    inside, after = with_pool(servers.database_url, work)
    assert inside == [("alice", "7MB", "off")]
    assert after[0][0] in ("", None) and after[0][1] != "7MB"


def test_an_error_is_raised_once_every_answer_is_in_and_the_connection_stays_usable(servers):
    async def work(pool: AsyncConnectionPool) -> tuple[int, list[Any]]:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
        with pytest.raises(errors.UndefinedTable):
            await read_batch(
                pool, "alice", [Statement("SELECT 1"), Statement("SELECT * FROM no_such_table")]
            )
        with pytest.raises(errors.DivisionByZero):
            await read_batch(pool, "alice", [Statement("SELECT 1 / %s::int", [0])])
        async with pool.connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            same = conn.info.backend_pid == pid
        return same, await read_batch(pool, "alice", [Statement("SELECT 7")])

    assert with_pool(servers.database_url, work) == (True, [[(7,)]])


def test_repeating_statements_are_prepared_once_and_others_never(servers):
    repeated = Statement("SELECT %s::int + 1", [1])
    one_off = Statement("SELECT %s::int + 2", [1], prepare=False)

    async def work(pool: AsyncConnectionPool) -> list[Any]:
        for _ in range(3):
            assert await read_batch(pool, "alice", [repeated, one_off]) == [[(2,)], [(3,)]]
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT statement FROM pg_prepared_statements WHERE name LIKE '\\_engram\\_%%'"
            )
            return sorted(row[0] for row in await cur.fetchall())

    # the scope's statement (the pool's text-search configuration and GIN pending-list
    # limit, then the user's scope) and the repeated one
    assert with_pool(servers.database_url, work) == [
        "SELECT $1::int + 1",
        "SELECT set_config($1, $2, true), set_config($3, $4, true), set_config($5, $6, true), "
        "set_config($7, $8, true)",
    ]


def test_nothing_is_prepared_when_the_pool_never_prepares(servers):
    async def work(pool: AsyncConnectionPool) -> list[Any]:
        for _ in range(3):
            await read_batch(pool, "alice", [Statement("SELECT %s::int", [1])])
        async with pool.connection() as conn:
            cur = await conn.execute(PREPARED)
            return await cur.fetchall()

    assert with_pool(servers.database_url, work, prepare_threshold=None) == [(0,)]


@pytest.mark.parametrize("how", ["rollback", "deallocate"])
def test_statements_deallocated_behind_the_batchs_back_are_prepared_again(servers, how):
    """psycopg sends DEALLOCATE ALL after a rollback on a connection where it prepared
    statements of its own (the batch's statements are forgotten when ``run_scoped`` rolls
    back); anyone else's DEALLOCATE is found out by failing once, and the batch is sent
    again. Either way the next batch answers."""
    statement = Statement("SELECT %s::int * 3", [5])

    async def fail(conn: psycopg.AsyncConnection) -> None:
        for _ in range(6):  # past psycopg's prepare threshold: it prepares this one
            await conn.execute("SELECT %s::int", [1])
        raise errors.CheckViolation("rolled back")

    async def work(pool: AsyncConnectionPool) -> tuple[list[Any], list[Any], list[Any]]:
        first = await read_batch(pool, "alice", [statement])
        if how == "rollback":
            with pytest.raises(errors.CheckViolation):
                await run_scoped(pool, "alice", fail)
        async with pool.connection() as conn:
            if how == "deallocate":
                await conn.execute("DEALLOCATE ALL")
            cur = await conn.execute(PREPARED)
            gone = await cur.fetchall()
        again = await read_batch(pool, "alice", [statement])
        return first, gone, again

    first, gone, again = with_pool(servers.database_url, work)
    assert gone == [(0,)]
    assert first == again == [[(15,)]]


def test_an_abandoned_batch_closes_its_connection_and_the_pool_replaces_it(servers):
    async def work(pool: AsyncConnectionPool) -> tuple[bool, list[Any]]:
        async with pool.connection() as conn:
            first = conn
        task = asyncio.ensure_future(read_batch(pool, "alice", [Statement("SELECT pg_sleep(3)")]))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rows = await read_batch(pool, "alice", [Statement("SELECT 5")])
        return first.closed, rows

    assert with_pool(servers.database_url, work) == (True, [[(5,)]])


def test_a_batch_refuses_to_run_inside_psycopgs_pipeline(servers):
    async def work(pool: AsyncConnectionPool) -> None:
        async with pool.connection() as conn, conn.pipeline():
            with pytest.raises(psycopg.ProgrammingError):
                await run_batch(conn, [Statement("SELECT 1")])

    with_pool(servers.database_url, work)


def test_named_and_positional_parameters_do_not_mix(servers):
    async def work(pool: AsyncConnectionPool) -> None:
        async with pool.connection() as conn:
            with pytest.raises(psycopg.ProgrammingError):
                await run_batch(conn, [Statement("SELECT %s, %(a)s", {"a": 1})])

    with_pool(servers.database_url, work)
