"""Tiered vector storage: which vectors a space's HNSW index holds, and moving them in.

A vector is written unindexed (migration 0021), where no HNSW graph is kept: users with up
to ``exact_max_rows`` vectors are searched exactly and never need one, and a write costs
the same whatever the table's size. Once a user has more, the worker's indexer marks their
vectors indexed, a batch at a time, which puts them into the space's partial HNSW index.
Searches stay complete throughout: a user with many vectors still unindexed is searched
exactly, and one with a few is searched through the index and those few measured exactly
(``models.search.statements``). A vector given a new embedding is unindexed again until
the indexer's next pass.
"""

from __future__ import annotations

from typing import NamedTuple

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from models.db.rows import fetch_all
from models.embedding.spaces import Space
from models.types import ItemType

# Vectors put into the HNSW index in one transaction: each takes a few milliseconds there.
INDEX_BATCH = 500


class Waiting(NamedTuple):
    """A user's vectors of one type in a space that the index should hold and does not."""

    space: str
    user_id: str
    kind: ItemType
    unindexed: int


async def waiting(
    conn: AsyncConnection, spaces: list[str], *, exact_max_rows: int, limit: int
) -> list[Waiting]:
    """Users above ``exact_max_rows`` vectors in one of ``spaces`` with vectors unindexed,
    the fewest waiting first (a user searched through the index gets its short tail indexed
    before a large import is done). Across all users: scope the transaction to all."""
    return await fetch_all(
        conn,
        class_row(Waiting),
        "SELECT space, user_id, kind, unindexed FROM vector_counts "
        "WHERE space = ANY(%s) AND vectors > %s AND unindexed > 0 "
        "ORDER BY unindexed, user_id, space, kind LIMIT %s",
        [spaces, exact_max_rows, limit],
    )


async def index_batch(
    conn: AsyncConnection, space: Space, user_id: str, kind: ItemType, *, limit: int
) -> int:
    """Put up to ``limit`` of the user's unindexed vectors of ``kind`` into ``space``'s HNSW
    index; return how many. Vectors another transaction holds are left to a later batch,
    so two indexers never wait for each other. The batch is picked once, in a CTE: as the
    inner side of a join the locking subquery could run again, and pass over the rows this
    statement had just updated to take the next ones, and the next."""
    cursor = await conn.execute(
        sql.SQL(
            """
            WITH picked AS MATERIALIZED (
                SELECT item_id FROM {table}
                WHERE user_id = %(user_id)s AND kind = %(kind)s AND NOT indexed
                ORDER BY item_id LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED)
            UPDATE {table} v SET indexed = true
            FROM picked w
            WHERE v.user_id = %(user_id)s AND v.item_id = w.item_id
            """
        ).format(table=sql.Identifier(space.table)),
        {"user_id": user_id, "kind": kind, "limit": limit},
    )
    return cursor.rowcount
