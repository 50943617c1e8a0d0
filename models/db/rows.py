"""Reading rows: every repository reads through a psycopg row factory, so each row is mapped
by its column names (``class_row`` to a Struct or NamedTuple, ``scalar_row`` for a single
column, ``kwargs_row`` to a function of the columns)."""

from __future__ import annotations

from typing import Any, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import AsyncRowFactory

R = TypeVar("R")
Query = str | sql.SQL | sql.Composed
Params = dict[str, Any] | list[Any] | None


async def fetch_all(
    conn: AsyncConnection, row: AsyncRowFactory[R], query: Query, params: Params = None
) -> list[R]:
    """Every row of ``query``, each made by ``row``."""
    async with conn.cursor(row_factory=row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_one(
    conn: AsyncConnection, row: AsyncRowFactory[R], query: Query, params: Params = None
) -> R | None:
    """The first row of ``query`` made by ``row``, or None when there is none."""
    async with conn.cursor(row_factory=row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()
