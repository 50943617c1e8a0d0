"""Per-user search with complete results: vector, hybrid, and optional re-ranking.

pgvector filters rows *after* an HNSW scan, so a user who owns a small share of the table
would get short answers from the index. We therefore search a user's vectors exactly when
they are few (a scan through the ``(user_id, item_id)`` primary key), and through HNSW with
an iterative scan otherwise; an HNSW answer shorter than asked is re-checked exactly, so a
user with at least ``k`` matching items always gets ``k`` results.

Hybrid mode fuses the vector ranking with a full-text ranking (reciprocal rank fusion);
``diversity`` re-ranks by maximal marginal relevance; ``weights`` blend in recency and
importance. Formulas are in docs/api.md.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
from pgvector import Vector
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from models.filters import FilterCompiler
from models.spaces import Space
from models.types import ItemType, SearchHit

RRF_K = 60  # the usual constant of reciprocal rank fusion
CANDIDATES_PER_RESULT = 4  # re-ranking modes look this many times deeper than k
MIN_CANDIDATES = 40

_COLUMNS = """
    {kind} AS type, m.id, m.content, m.metadata, m.session_id, m.importance,
    {document_id} AS document_id, {chunk_index} AS chunk_index, m.created_at
"""
_FROM = """
    FROM {table} v
    JOIN {source} m ON m.user_id = v.user_id AND m.id = v.item_id
                   AND m.content_hash = v.content_hash
"""
_WHERE = """
    WHERE {user_match} AND v.kind = {kind}
      AND (m.expires_at IS NULL OR m.expires_at > now())
      AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)
      AND (%(after)s::timestamptz IS NULL OR m.created_at >= %(after)s)
      AND (%(before)s::timestamptz IS NULL OR m.created_at < %(before)s)
      AND {filter}
"""
# Where each type of item comes from, with the same columns. A chunk is live while it
# belongs to its document's current generation; it carries its document's metadata.
_SOURCES = {
    "memory": {
        "source": "memories",
        "document_id": "NULL::uuid",
        "chunk_index": "NULL::int",
    },
    "chunk": {
        "source": """(
            SELECT k.user_id, k.id, k.content, k.content_hash, d.metadata,
                   NULL::text AS session_id, NULL::float8 AS importance, k.document_id,
                   k.chunk_index, k.created_at, NULL::timestamptz AS expires_at, k.content_tsv
            FROM chunks k
            JOIN documents d ON d.user_id = k.user_id AND d.id = k.document_id
                            AND d.generation = k.generation)""",
        "document_id": "m.document_id",
        "chunk_index": "m.chunk_index",
    },
}
_KINDS: tuple[ItemType, ...] = ("memory", "chunk")
_MATCHES = "SELECT " + _COLUMNS + ", v.embedding <=> {query} AS distance" + _FROM + _WHERE
_APPROXIMATE = "WITH matches AS ({matches}) {ranked}"
# The exact scan measures the user's vectors alone first (MATERIALIZED keeps the planner
# from reaching for the HNSW index), keeps the nearest ``window`` of them, and only then
# joins their items: at 20k vectors that is about half the time of joining every item.
# ``window`` is NULL (no limit) when filters on the items could reject many of them.
_EXACT = (
    """
    WITH scored AS MATERIALIZED (
        SELECT v.item_id, v.content_hash, v.embedding <=> {query} AS distance
        FROM {table} v WHERE v.user_id = %(user_id)s AND v.kind = {kind}),
    nearest AS (SELECT * FROM scored ORDER BY distance, item_id LIMIT %(window)s),
    matches AS (
        SELECT """
    + _COLUMNS
    + """, v.distance
        FROM nearest v
        JOIN {source} m ON m.user_id = %(user_id)s AND m.id = v.item_id
                       AND m.content_hash = v.content_hash
        WHERE (m.expires_at IS NULL OR m.expires_at > now())
          AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)
          AND (%(after)s::timestamptz IS NULL OR m.created_at >= %(after)s)
          AND (%(before)s::timestamptz IS NULL OR m.created_at < %(before)s)
          AND {filter})
    {ranked}"""
)
# Nearest vectors looked at per result wanted, before their items are checked (stale,
# expired); an answer that comes back short is searched again without a window.
WINDOW_PER_RESULT = 2
WINDOW_SLACK = 20
# How the HNSW path and hybrid mode find the user's vectors. For the HNSW path the
# condition is written so that no user_id index can serve it: otherwise the planner
# prefers sorting every distance of a large user (0.5 s at 100k vectors) to the index scan
# it should take (tens of ms, with the iterative scan filtering by user).
_USER_MATCH = {
    "exact": sql.SQL("v.user_id = %(user_id)s"),
    "approximate": sql.SQL("(v.user_id || '') = %(user_id)s"),
}
_RANKED = """
    SELECT type, id, 1 - distance AS score, 1 - distance AS similarity, content, metadata,
           session_id, importance, document_id, chunk_index, created_at
    FROM matches
    WHERE %(max_distance)s::float8 IS NULL OR distance <= %(max_distance)s
    ORDER BY distance, id
    LIMIT %(limit)s
"""
# Full-text candidates for hybrid mode, with their cosine similarity for the answer. Items
# holding every word of the query come first and alone (an exact code or name); only when
# there are none are the words OR-ed, so a question's filler words cannot veto a match.
_TEXT = (
    "SELECT "
    + _COLUMNS
    + ", ts_rank_cd(m.content_tsv, q.query) AS score,"
    + " 1 - (v.embedding <=> {query}) AS similarity"
    + _FROM
    + " CROSS JOIN (SELECT coalesce(string_agg(quote_literal(word), %(glue)s), '')::tsquery"
    + "   FROM unnest(tsvector_to_array(to_tsvector('simple', %(text)s))) AS word) AS q(query)"
    + _WHERE
    + """
      AND m.content_tsv @@ q.query
      AND (%(max_distance)s::float8 IS NULL OR (v.embedding <=> {query}) <= %(max_distance)s)
    ORDER BY score DESC, m.id
    LIMIT %(limit)s
"""
)


class LargeUsers:
    """Users who lately had more vectors of a type than the exact-search cap, so a search
    can skip counting them (counting 20k rows costs milliseconds on every query). Only a
    hint for speed: the HNSW path searches exactly whenever it comes back short, so a user
    who has shrunk since still gets complete answers. One per process; entries last
    ``ttl_seconds``."""

    def __init__(self, ttl_seconds: float = 60.0, size: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.size = size
        self._until: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def known(self, space: str, user_id: str, kind: str) -> bool:
        until = self._until.get((space, user_id, kind))
        return until is not None and until > time.monotonic()

    def remember(self, space: str, user_id: str, kind: str) -> None:
        self._until[(space, user_id, kind)] = time.monotonic() + self.ttl_seconds
        self._until.move_to_end((space, user_id, kind))
        if len(self._until) > self.size:
            self._until.popitem(last=False)


class Weights(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Opt-in blend of recency and importance into the score (memories)."""

    recency: float = 0.0
    importance: float = 0.0
    half_life_days: float = 30.0


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A validated search."""

    vector: np.ndarray
    k: int
    text: str | None = None
    hybrid: bool = False
    threshold: float | None = None
    metadata: dict[str, Any] | None = None
    session_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    diversity: float = 0.0
    weights: Weights | None = None
    types: tuple[ItemType, ...] = ("memory", "chunk")


async def search(
    conn: AsyncConnection,
    space: Space,
    user_id: str,
    query: SearchQuery,
    *,
    exact_max_rows: int,
    ef_search: int = 800,
    large: LargeUsers | None = None,
) -> list[SearchHit]:
    """The ``query.k`` best items of ``user_id``, best first."""
    reranks = query.hybrid or query.diversity > 0 or query.weights is not None
    depth = max(query.k * CANDIDATES_PER_RESULT, MIN_CANDIDATES) if reranks else query.k
    params, conditions = _params(space, user_id, query, depth)
    known = {k for k in _KINDS if large and large.known(space.name, user_id, k)}
    counts = await _vector_counts(conn, space, user_id, cap=exact_max_rows, known_large=known)
    for kind in _KINDS:  # only what was counted: a hint expires, then is measured again
        if large and kind not in known and counts[kind] > exact_max_rows:
            large.remember(space.name, user_id, kind)
    kinds = [kind for kind in query.types if counts[kind]]
    hits: list[SearchHit] = []
    text_hits: list[SearchHit] = []
    for kind in kinds:
        hits += await _nearest(
            conn,
            space,
            kind,
            params,
            conditions,
            exact=counts[kind] <= exact_max_rows,
            ef_search=ef_search,
        )
        if query.hybrid:
            text_hits += await _text_matches(conn, space, kind, params, conditions)
    hits = sorted(hits, key=lambda h: (-h.similarity, str(h.id)))[:depth]
    if query.hybrid:
        text_hits = sorted(text_hits, key=lambda h: -h.score)[:depth]
        hits = fuse(hits, text_hits)
    if query.weights is not None:
        hits = blend(hits, query.weights, now=datetime.now(UTC))
    if query.diversity > 0:
        embeddings = await _embeddings(conn, space, user_id, [h.id for h in hits])
        hits = diversify(hits, embeddings, query.vector, diversity=query.diversity, k=query.k)
    return hits[: query.k]


def _params(
    space: Space, user_id: str, query: SearchQuery, limit: int
) -> tuple[dict[str, Any], sql.Composable]:
    compiler = FilterCompiler()
    conditions = compiler.compile(query.metadata or {})
    params = {
        "query": Vector(query.vector),
        "user_id": user_id,
        "session_id": query.session_id,
        "after": query.created_after,
        "before": query.created_before,
        "max_distance": None if query.threshold is None else 1 - query.threshold,
        "text": query.text,
        "limit": limit,
        # whether conditions on the items themselves can reject some of the nearest vectors
        "filtered": bool(query.metadata)
        or query.session_id is not None
        or query.created_after is not None
        or query.created_before is not None,
        **compiler.params,
    }
    return params, conditions


async def _nearest(
    conn: AsyncConnection,
    space: Space,
    kind: ItemType,
    params: dict[str, Any],
    conditions: sql.Composable,
    *,
    exact: bool,
    ef_search: int,
) -> list[SearchHit]:
    if exact:
        return await _exact(conn, space, kind, params, conditions)
    async with conn.transaction():
        # Per transaction only: a pooled connection never carries these to another query.
        # Without sorts and sequential scans, the HNSW index is the plan that gives order.
        await conn.execute(
            "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
            "set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.max_scan_tuples', '1000000', true), "
            "set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true)",
            [str(min(1000, max(ef_search, 2 * params["limit"])))],
        )
        hits = await _run(conn, space, kind, _APPROXIMATE, params, conditions)
    if len(hits) < params["limit"]:
        hits = await _exact(conn, space, kind, params, conditions)
    return hits


async def _exact(
    conn: AsyncConnection,
    space: Space,
    kind: ItemType,
    params: dict[str, Any],
    conditions: sql.Composable,
) -> list[SearchHit]:
    """Brute force over the user's vectors: windowed when only stale or expired items can
    be rejected, else (filters) over all of them."""
    filtered = params["filtered"]
    window = None if filtered else params["limit"] * WINDOW_PER_RESULT + WINDOW_SLACK
    hits = await _run(conn, space, kind, _EXACT, params | {"window": window}, conditions)
    if window is not None and len(hits) < params["limit"]:
        hits = await _run(conn, space, kind, _EXACT, params | {"window": None}, conditions)
    return hits


async def _text_matches(
    conn: AsyncConnection,
    space: Space,
    kind: ItemType,
    params: dict[str, Any],
    conditions: sql.Composable,
) -> list[SearchHit]:
    every_word = await _run(conn, space, kind, _TEXT, params | {"glue": " & "}, conditions)
    if every_word:
        return every_word
    return await _run(conn, space, kind, _TEXT, params | {"glue": " | "}, conditions)


def fuse(vector_hits: list[SearchHit], text_hits: list[SearchHit]) -> list[SearchHit]:
    """Reciprocal rank fusion: score = sum over rankings of 1 / (60 + rank)."""
    fused: dict[Any, float] = {}
    found: dict[Any, SearchHit] = {}
    for ranking in (vector_hits, text_hits):
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
            found.setdefault(hit.id, hit)
    ordered = sorted(fused, key=lambda i: (-fused[i], -found[i].similarity, str(i)))
    return [msgspec.structs.replace(found[i], score=fused[i]) for i in ordered]


def blend(hits: list[SearchHit], weights: Weights, *, now: datetime) -> list[SearchHit]:
    """score = (1 - r - i) * score + r * 0.5 ** (age_days / half_life) + i * importance."""
    keep = 1 - weights.recency - weights.importance

    def blended(hit: SearchHit) -> float:
        age_days = max(0.0, (now - hit.created_at).total_seconds() / 86400)
        recency = 0.5 ** (age_days / weights.half_life_days)
        importance = 0.5 if hit.importance is None else hit.importance
        return float(keep * hit.score + weights.recency * recency + weights.importance * importance)

    rescored = [msgspec.structs.replace(h, score=blended(h)) for h in hits]
    return sorted(rescored, key=lambda h: (-h.score, str(h.id)))


def diversify(
    hits: list[SearchHit],
    embeddings: dict[Any, np.ndarray],
    query: np.ndarray,
    *,
    diversity: float,
    k: int,
) -> list[SearchHit]:
    """Maximal marginal relevance with lambda = 1 - diversity.

    Each pick maximises lambda * score - (1 - lambda) * (max cosine to the picks so far).
    The reported score is that value, made non-increasing so results stay sorted by score.
    """
    lam = 1 - diversity
    remaining = [h for h in hits if h.id in embeddings]
    picked: list[SearchHit] = []
    picked_vectors: list[np.ndarray] = []
    ceiling = math.inf
    while remaining and len(picked) < k:
        best, best_value = remaining[0], -math.inf
        for hit in remaining:
            redundancy = max((float(embeddings[hit.id] @ p) for p in picked_vectors), default=0.0)
            value = lam * hit.score - (1 - lam) * redundancy
            if value > best_value:
                best, best_value = hit, value
        ceiling = min(ceiling, best_value)
        picked.append(msgspec.structs.replace(best, score=ceiling))
        picked_vectors.append(embeddings[best.id])
        remaining.remove(best)
    return picked


async def _embeddings(
    conn: AsyncConnection, space: Space, user_id: str, ids: list[Any]
) -> dict[Any, np.ndarray]:
    cur = await conn.execute(
        sql.SQL(
            "SELECT item_id, embedding FROM {} WHERE user_id = %s AND item_id = ANY(%s)"
        ).format(sql.Identifier(space.table)),
        [user_id, ids],
    )
    return {row[0]: np.asarray(row[1].to_numpy(), dtype=np.float32) for row in await cur.fetchall()}


async def _vector_counts(
    conn: AsyncConnection,
    space: Space,
    user_id: str,
    *,
    cap: int,
    known_large: Collection[str] = (),
) -> dict[ItemType, int]:
    """How many vectors of each type the user has, each counted no further than ``cap + 1``
    (types in ``known_large`` are not counted: they are taken to be over the cap)."""
    counted = {
        kind: sql.SQL(
            "(SELECT count(*) FROM (SELECT 1 FROM {table} "
            "WHERE user_id = %(user)s AND kind = {kind} LIMIT %(cap)s) c)"
        ).format(table=sql.Identifier(space.table), kind=sql.Literal(kind))
        if kind not in known_large
        else sql.SQL("%(cap)s::bigint")
        for kind in _KINDS
    }
    cur = await conn.execute(
        sql.SQL("SELECT {}, {}").format(counted["memory"], counted["chunk"]),
        {"user": user_id, "cap": cap + 1},
    )
    row = await cur.fetchone()
    return {"memory": int(row[0]), "chunk": int(row[1])} if row else {"memory": 0, "chunk": 0}


async def _run(
    conn: AsyncConnection,
    space: Space,
    kind: ItemType,
    shape: str,
    params: dict[str, Any],
    conditions: sql.Composable,
) -> list[SearchHit]:
    source = _SOURCES[kind]
    parts = {
        "table": sql.Identifier(space.table),
        "source": sql.SQL(source["source"]),
        "kind": sql.Literal(kind),
        "document_id": sql.SQL(source["document_id"]),
        "chunk_index": sql.SQL(source["chunk_index"]),
        "filter": conditions,
        "user_match": _USER_MATCH["approximate" if shape is _APPROXIMATE else "exact"],
        # the query vector in the column's type (halfvec spaces compare in halfvec)
        "query": sql.SQL("%(query)s::{}").format(sql.SQL(space.storage)),
    }
    if shape is _TEXT:
        query = sql.SQL(_TEXT).format(**parts)
    elif shape is _EXACT:
        query = sql.SQL(_EXACT).format(**parts, ranked=sql.SQL(_RANKED))
    else:
        query = sql.SQL(shape).format(
            matches=sql.SQL(_MATCHES).format(**parts), ranked=sql.SQL(_RANKED)
        )
    async with conn.cursor(row_factory=class_row(SearchHit)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
