"""Per-user vector search with complete results.

pgvector filters rows *after* an HNSW scan, so a user who owns a small share of the table
would get short answers from the index. We therefore search a user's vectors exactly when
they are few (a scan through the ``(user_id, item_id)`` primary key), and through HNSW with
an iterative scan otherwise; an HNSW answer shorter than ``k`` is re-checked exactly, so a
user with at least ``k`` matching items always gets ``k`` results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pgvector import Vector
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from models.spaces import Space
from models.types import SearchHit

_MATCHES = """
    SELECT 'memory' AS type, m.id, m.content, m.metadata, m.session_id,
           NULL::uuid AS document_id, NULL::int AS chunk_index, m.created_at,
           v.embedding <=> %(query)s AS distance
    FROM {table} v
    JOIN memories m ON m.user_id = v.user_id AND m.id = v.item_id
                   AND m.content_hash = v.content_hash
    WHERE v.user_id = %(user_id)s AND v.kind = 'memory'
      AND m.status = 'ready' AND (m.expires_at IS NULL OR m.expires_at > now())
      AND m.metadata @> %(filter)s
      AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)
"""

# MATERIALIZED keeps the planner from reaching for the HNSW index: this scan is exact.
_EXACT = "WITH matches AS MATERIALIZED ({matches}) {ranked}"
_APPROXIMATE = "WITH matches AS ({matches}) {ranked}"
_RANKED = """
    SELECT type, id, 1 - distance AS score, 1 - distance AS similarity, content, metadata,
           session_id, document_id, chunk_index, created_at
    FROM matches
    WHERE %(max_distance)s::float8 IS NULL OR distance <= %(max_distance)s
    ORDER BY distance, id
    LIMIT %(k)s
"""


async def search_vectors(
    conn: AsyncConnection,
    space: Space,
    user_id: str,
    query: np.ndarray,
    *,
    k: int,
    threshold: float | None = None,
    metadata: dict[str, Any] | None = None,
    session_id: str | None = None,
    exact_max_rows: int = 20_000,
) -> list[SearchHit]:
    """The ``k`` items of ``user_id`` nearest to ``query`` by cosine similarity."""
    params = {
        "query": Vector(query),
        "user_id": user_id,
        "filter": Jsonb(metadata or {}),
        "session_id": session_id,
        "max_distance": None if threshold is None else 1 - threshold,
        "k": k,
    }
    if await _vector_count(conn, space, user_id, cap=exact_max_rows) <= exact_max_rows:
        return await _run(conn, space, _EXACT, params)
    async with conn.transaction():
        # Per transaction only: a pooled connection never carries these to another query.
        await conn.execute(
            "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
            "set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.max_scan_tuples', '1000000', true)",
            [str(max(100, 2 * k))],
        )
        hits = await _run(conn, space, _APPROXIMATE, params)
    if len(hits) < k:
        hits = await _run(conn, space, _EXACT, params)
    return hits


async def _vector_count(conn: AsyncConnection, space: Space, user_id: str, *, cap: int) -> int:
    """How many vectors the user has, counted no further than ``cap + 1``."""
    cur = await conn.execute(
        sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE user_id = %s LIMIT %s) s").format(
            sql.Identifier(space.table)
        ),
        [user_id, cap + 1],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _run(
    conn: AsyncConnection, space: Space, shape: str, params: dict[str, Any]
) -> list[SearchHit]:
    matches = sql.SQL(_MATCHES).format(table=sql.Identifier(space.table))
    query = sql.SQL(shape).format(matches=matches, ranked=sql.SQL(_RANKED))
    async with conn.cursor(row_factory=class_row(SearchHit)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
