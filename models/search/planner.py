"""Per-user search with complete results: vector, hybrid, and optional re-ranking.

pgvector filters rows *after* an HNSW scan, so a user who owns a small share of the table
would get short answers from the index. We therefore search a user's vectors exactly when
they are few (a scan through the ``(user_id, kind)`` index), and through HNSW with an
iterative scan otherwise; an HNSW answer shorter than asked is re-checked exactly, so a
user with at least ``k`` matching items always gets ``k`` results.

A search is usually one round trip: each statement reads the user's vector counts itself
and searches only when its path is the right one; what this process lately learned of a
user's counts (``SizeHints``) picks the statements to send: the HNSW one for a large user,
none for a type of item the user has no vectors of.

Hybrid mode fuses the vector ranking with a full-text ranking (reciprocal rank fusion);
``diversity`` re-ranks by maximal marginal relevance; ``weights`` blend in recency and
importance. Formulas are in docs/api.md.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
from pgvector import Vector
from psycopg import sql

from models.db.batch import Statement
from models.db.scope import set_configs
from models.embedding.spaces import Space
from models.search.filters import FilterCompiler
from models.store.items import LIVE_MEMORY
from models.types import ItemType, SearchHit

# Runs statements in one transaction with some settings, answering each one's rows
# (models.db.read_batch).
Reader = Callable[[Sequence[Statement], Mapping[str, str]], Awaitable[list[list[Any]]]]

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
_WHERE = (
    """
    WHERE {user_match} AND v.kind = {kind}
      AND """
    + LIVE_MEMORY
    + """
      AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)
      AND (%(after)s::timestamptz IS NULL OR m.created_at >= %(after)s)
      AND (%(before)s::timestamptz IS NULL OR m.created_at < %(before)s)
      AND {filter}
"""
)
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
# Each counted statement also reports the count of the other type of item.
_OTHER: dict[ItemType, ItemType] = {"memory": "chunk", "chunk": "memory"}
_MATCHES = "SELECT " + _COLUMNS + ", v.embedding <=> {query} AS distance" + _FROM + _WHERE
_APPROXIMATE = "WITH {counting} matches AS ({matches} {gate}), ranked AS ({ranked}) {answer}"
# The exact scan measures the user's vectors alone first, keeps the nearest ``window`` of
# them, and only then joins their items: at 20k vectors that is about half the time of
# joining every item. Its order, ``distance + 0``, is one that no index offers, so the
# planner cannot reach for the HNSW index (which would filter by user after the fact); that
# is also 12-19% faster from 1k to 19k vectors than a MATERIALIZED scan sorted afterwards.
# ``window`` is NULL (no limit) when filters on the items could reject many of them.
_EXACT = (
    """
    WITH {counting}
    nearest AS (
        SELECT v.item_id, v.content_hash, (v.embedding <=> {query}) + 0 AS distance
        FROM {table} v WHERE v.user_id = %(user_id)s AND v.kind = {kind} {gate}
        ORDER BY distance, v.item_id LIMIT %(window)s),
    matches AS (
        SELECT """
    + _COLUMNS
    + """, v.distance
        FROM nearest v
        JOIN {source} m ON m.user_id = %(user_id)s AND m.id = v.item_id
                       AND m.content_hash = v.content_hash
        WHERE """
    + LIVE_MEMORY
    + """
          AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)
          AND (%(after)s::timestamptz IS NULL OR m.created_at >= %(after)s)
          AND (%(before)s::timestamptz IS NULL OR m.created_at < %(before)s)
          AND {filter}),
    ranked AS ({ranked})
    {answer}"""
)
# The first batch's exact and HNSW statements both read the user's number of vectors
# (kept by triggers, migration 0011): the exact one scans only when there are at most
# ``cap``, the HNSW one only when there are more. The gates are one-time filters, so the
# statement not taken costs its count alone. Their rows carry the count of their own type
# and of the other one (which vouches for a type not searched), and there is a row even
# when nothing is found.
_COUNTING = """counted AS MATERIALIZED (
        SELECT coalesce(sum(vectors) FILTER (WHERE kind = {kind}), 0) AS n,
               coalesce(sum(vectors) FILTER (WHERE kind = {other}), 0) AS other_n
        FROM vector_counts WHERE user_id = %(user_id)s AND space = %(space)s),"""
_GATES = {
    "exact": "AND (SELECT n FROM counted) <= %(cap)s",
    "approximate": "AND (SELECT n FROM counted) > %(cap)s",
}
_COUNTED_ANSWER = (
    "SELECT c.n AS counted, c.other_n, r.* FROM counted c LEFT JOIN ranked r ON true "
    "ORDER BY r.score DESC, r.id"
)
_ANSWER = "SELECT * FROM ranked ORDER BY score DESC, id"
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
# The HNSW path orders by distance alone, the order its index scan gives: breaking ties by
# id as well would sort, and so fetch one row more than the limit from the scan (0.13 ms of
# a large user's 5 ms). Its answer is still sorted by (score, id) in the end.
_RANKED = """
    SELECT type, id, 1 - distance AS score, 1 - distance AS similarity, content, metadata,
           session_id, importance, document_id, chunk_index, created_at
    FROM matches
    WHERE %(max_distance)s::float8 IS NULL OR distance <= %(max_distance)s
    ORDER BY {order}
    LIMIT %(limit)s
"""
# Full-text candidates for hybrid mode, with their cosine similarity for the answer. Items
# holding every word of the query come first and alone (an exact code or name); only when
# there are none are the words OR-ed, so a question's filler words cannot veto a match.
_TEXT = (
    """
    SELECT {kind} AS type, m.id, ts_rank_cd(m.content_tsv, q.query) AS score,
           1 - (v.embedding <=> {query}) AS similarity, m.content, m.metadata, m.session_id,
           m.importance, {document_id} AS document_id, {chunk_index} AS chunk_index,
           m.created_at"""
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


class SizeHints:
    """What this process lately learned of users' vector counts, per space and type of
    item: the path a search should take ("exact", "approximate" for HNSW) or "none" (no
    vectors: a search need not send that type's statement). Only a hint: every statement
    reads the counts itself and scans only on the right path, and reports the other type's
    count too, so a wrong hint costs a second round trip, never an answer. One per process;
    entries last ``ttl_seconds``.

    A user it knows nothing of takes the exact path, or "none" for a type that no user of
    the space lately had vectors of while some had none (a space of memories alone, say):
    their first search then sends one statement, not two."""

    def __init__(self, ttl_seconds: float = 60.0, size: int = 50_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.size = size
        self._hints: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()
        # (space, type) -> when a user was last seen with vectors of it, and without
        self._types: dict[tuple[str, str], tuple[float, float]] = {}

    def path(self, space: str, user_id: str, kind: str) -> str:
        now = time.monotonic()
        hint = self._hints.get((space, user_id, kind))
        if hint and hint[1] > now:
            return hint[0]
        with_vectors, without = self._types.get((space, kind), (-math.inf, -math.inf))
        lately = now - self.ttl_seconds
        return "none" if without > lately >= with_vectors else "exact"

    def remember(self, space: str, user_id: str, kind: str, path: str) -> None:
        now = time.monotonic()
        with_vectors, without = self._types.get((space, kind), (-math.inf, -math.inf))
        self._types[(space, kind)] = (with_vectors, now) if path == "none" else (now, without)
        key = (space, user_id, kind)
        if path == "exact":  # the default: no entry needed
            self._hints.pop(key, None)
            return
        self._hints[key] = (path, now + self.ttl_seconds)
        self._hints.move_to_end(key)
        if len(self._hints) > self.size:
            self._hints.popitem(last=False)


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
    read: Reader,
    space: Space,
    user_id: str,
    query: SearchQuery,
    *,
    exact_max_rows: int,
    ef_search: int = 800,
    hints: SizeHints | None = None,
) -> list[SearchHit]:
    """The ``query.k`` best items of ``user_id``, best first.

    ``read`` runs a batch of statements in one transaction (``models.db.read_batch``: one
    round trip). One batch usually answers: per type of item, the exact search or, for a
    user known to be large, the HNSW one (each reads the user's counts, ``vector_counts``,
    and scans only when it is the right path), plus the all-words text search in hybrid
    mode; a type the user lately had no vectors of is left out while another type's
    statement reports its count. A second batch follows only when the first could not
    answer: the other path was the right one, a type left out has vectors now, a window or
    an index scan came back short (stale or expired items), or a text search needs its
    looser form. MMR reads the candidates' vectors last.
    """
    reranks = query.hybrid or query.diversity > 0 or query.weights is not None
    depth = max(query.k * CANDIDATES_PER_RESULT, MIN_CANDIDATES) if reranks else query.k
    params, conditions = _params(space, user_id, query, depth)
    window = None if params["filtered"] else depth * WINDOW_PER_RESULT + WINDOW_SLACK
    params |= {"cap": exact_max_rows, "window": window, "space": space.name}
    shapes = _Shapes(space, conditions, cacheable=not query.metadata)

    def path_of(vectors: int) -> str:
        return "exact" if vectors <= exact_max_rows else "approximate"

    def hint_of(vectors: int) -> str:
        return path_of(vectors) if vectors else "none"

    hinted = {k: hints.path(space.name, user_id, k) if hints else "exact" for k in query.types}
    # a type without vectors is left out only while another type's statement vouches for it
    sent = [k for k in query.types if hinted[k] != "none"] or list(query.types[:1])
    pending = {kind: "exact" if hinted[kind] == "none" else hinted[kind] for kind in sent}
    unsent = {kind for kind in query.types if kind not in pending}
    glues = dict.fromkeys(query.types if query.hybrid else (), " & ")
    found: dict[ItemType, list[SearchHit]] = {}
    text_found: dict[ItemType, list[SearchHit]] = {}
    for round_ in range(3):
        if not pending and not glues:
            break
        asked, statements, settings = _batch(shapes, params, pending, glues, ef_search)
        results = await read(statements, settings)
        pending, glues = {}, {}
        for answers, rows in zip(asked, results, strict=True):
            if answers is None:  # a statement of settings
                continue
            kind, shape = answers
            if shape in (" & ", " | "):
                if rows or shape == " | ":
                    text_found[kind] = rows
                else:  # no item holds every word: any of them will do
                    glues[kind] = " | "
                continue
            if shape == "all":
                found[kind] = rows
                continue
            vectors, other_vectors = rows[0][0], rows[0][1]
            other = _OTHER[kind]
            if hints:
                hints.remember(space.name, user_id, kind, hint_of(vectors))
                hints.remember(space.name, user_id, other, hint_of(other_vectors))
            if other in unsent:  # left out as empty: search it after all if it is not
                unsent.discard(other)
                if other_vectors:
                    pending[other] = path_of(other_vectors)
            right = path_of(vectors)
            hits = [hit for _, _, hit in rows if hit is not None]
            complete = len(hits) >= depth or (
                shape == "exact" and (window is None or vectors <= window)
            )
            if shape == right and complete:
                found[kind] = hits
            else:  # the other path, or a short window or index scan; at last, everything
                pending[kind] = right if shape != right and round_ == 0 else "all"
    # ties go by id: UUIDs compare as Postgres compares them (and as their text sorts)
    hits = sorted((h for kind in query.types for h in found.get(kind, ())),
                  key=lambda h: (-h.similarity, h.id))[:depth]  # fmt: skip
    if query.hybrid:
        text_hits = sorted((h for rows in text_found.values() for h in rows),
                           key=lambda h: -h.score)[:depth]  # fmt: skip
        hits = fuse(hits, text_hits)
    if query.weights is not None:
        hits = blend(hits, query.weights, now=datetime.now(UTC))
    if query.diversity > 0:
        embeddings = await _embeddings(read, space, user_id, [h.id for h in hits])
        hits = diversify(hits, embeddings, query.vector, diversity=query.diversity, k=query.k)
    return hits[: query.k]


def _batch(
    shapes: _Shapes,
    params: dict[str, Any],
    pending: dict[ItemType, str],
    glues: dict[ItemType, str],
    ef_search: int,
) -> tuple[list[tuple[ItemType, str] | None], list[Statement], dict[str, str]]:
    """One round: what each statement answers (None: settings), the statements, and the
    settings for the whole batch. The HNSW settings (no sorts, no sequential scans) must
    not reach the other statements' plans: they go with the scope when only HNSW
    statements follow, else in a statement of their own after the others. Plain counted
    statements use generic plans (``GENERIC_PLANS``)."""
    asked: list[tuple[ItemType, str] | None] = []
    statements: list[Statement] = []
    for kind, shape in pending.items():
        if shape != "approximate":
            asked.append((kind, shape))
            statements.append(shapes.statement(kind, shape, params))
    for kind, glue in glues.items():
        asked.append((kind, glue))
        statements.append(shapes.text(kind, params | {"glue": glue}))
    settings = dict(NO_PARALLEL_WORKERS)
    if not params["filtered"] and not glues and "all" not in pending.values():
        settings |= GENERIC_PLANS
    hnsw = hnsw_settings(ef_search, params["limit"])
    approximate = [kind for kind, shape in pending.items() if shape == "approximate"]
    if approximate and not statements:
        settings |= hnsw
    elif approximate:
        asked.append(None)
        statements.append(Statement(*set_configs(hnsw), rows=None))
    for kind in approximate:
        asked.append((kind, "approximate"))
        statements.append(shapes.statement(kind, "approximate", params))
    return asked, statements, settings


def fuse(vector_hits: list[SearchHit], text_hits: list[SearchHit]) -> list[SearchHit]:
    """Reciprocal rank fusion: score = sum over rankings of 1 / (60 + rank)."""
    fused: dict[Any, float] = {}
    found: dict[Any, SearchHit] = {}
    for ranking in (vector_hits, text_hits):
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
            found.setdefault(hit.id, hit)
    ordered = sorted(fused, key=lambda i: (-fused[i], -found[i].similarity, i))
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
    return sorted(rescored, key=lambda h: (-h.score, h.id))


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
    read: Reader, space: Space, user_id: str, ids: list[Any]
) -> dict[Any, np.ndarray]:
    query = sql.SQL(
        "SELECT item_id, embedding FROM {} WHERE user_id = %(user_id)s AND item_id = ANY(%(ids)s)"
    ).format(sql.Identifier(space.table))
    statement = Statement(query.as_string(), {"user_id": user_id, "ids": ids})
    (rows,) = await read([statement], {})
    return {row[0]: np.asarray(row[1].to_numpy(), dtype=np.float32) for row in rows}


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


# For the rest of the search's transaction: the exact statement that a large user does not
# take would still start its parallel workers (10 ms here) before its gate says no, and
# exact scans of up to the cap run no faster in parallel on a small machine.
NO_PARALLEL_WORKERS = {"max_parallel_workers_per_gather": "0"}
# Planning the counted statements anew for every search (PostgreSQL's choice for them) cost
# 0.4 ms of a small user's 1.4 ms here; their generic plans, made once per connection, were
# as fast as custom ones for users of 500 to 20,000 vectors and on the HNSW path. Statements
# whose plans depend on their values (filters on the items, which search every vector of
# the user; the text search; the unwindowed "all") keep custom plans.
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


def hnsw_settings(ef_search: int, limit: int) -> dict[str, str]:
    """The HNSW path's settings, for the rest of its transaction only (a pooled connection
    never carries them on). Without sorts and sequential scans, the HNSW index is the
    plan that gives order."""
    return {
        "hnsw.iterative_scan": "strict_order",
        "hnsw.ef_search": str(min(1000, max(ef_search, 2 * limit))),
        "hnsw.max_scan_tuples": "1000000",
        "enable_sort": "off",
        "enable_seqscan": "off",
    }


def _make_counted_hit(values: Sequence[Any]) -> tuple[int, int, SearchHit | None]:
    """A row of a counted search: (vectors of its type, vectors of the other type, a hit
    or None when there is none)."""
    counted, other = int(values[0]), int(values[1])
    return counted, other, None if values[3] is None else _make_hit(values[2:])


def _make_hit(values: Sequence[Any]) -> SearchHit:
    """A hit from its columns, taken by their place in ``_RANKED``'s list (and
    ``_TEXT``'s), not by name: reading the names cost more than the rest of the row
    (tests/test_search.py checks the places)."""
    return SearchHit(
        type=values[0],
        id=values[1],
        score=values[2],
        similarity=values[3],
        content=values[4],
        metadata=values[5],
        session_id=values[6],
        importance=values[7],
        document_id=values[8],
        chunk_index=values[9],
        created_at=values[10],
    )


# Composed statements without a metadata filter, by (table, storage, type, shape):
# composing costs about as much as searching a small user, and these few repeat.
_COMPOSED: dict[tuple[str, ...], str] = {}


class _Shapes:
    """The search statements of one query, composed for its space and filter."""

    def __init__(self, space: Space, conditions: sql.Composable, *, cacheable: bool) -> None:
        self.space = space
        self.conditions = conditions
        self.cacheable = cacheable

    def statement(self, kind: ItemType, shape: str, params: dict[str, Any]) -> Statement:
        """ "exact" (through the window) or "approximate" (HNSW), each counted and gated by
        the user's number of vectors, its rows (count, other type's count, hit); or "all":
        an exact search of every vector, ungated, its rows hits."""
        if shape == "all":
            params = params | {"window": None}
        rows = _make_hit if shape == "all" else _make_counted_hit
        return Statement(self._compose(kind, shape), params, rows=rows, prepare=self.cacheable)

    def text(self, kind: ItemType, params: dict[str, Any]) -> Statement:
        query = self._compose(kind, "text")
        return Statement(query, params, rows=_make_hit, prepare=self.cacheable)

    def _compose(self, kind: ItemType, shape: str) -> str:
        if not self.cacheable:  # a metadata filter: composed for this query alone
            return _compose(self.space, kind, shape, self.conditions).as_string()
        key = (self.space.table, self.space.storage, kind, shape)
        if key not in _COMPOSED:
            _COMPOSED[key] = _compose(self.space, kind, shape, self.conditions).as_string()
        return _COMPOSED[key]


def _compose(space: Space, kind: ItemType, shape: str, conditions: sql.Composable) -> sql.Composed:
    source = _SOURCES[kind]
    parts = {
        "table": sql.Identifier(space.table),
        "source": sql.SQL(source["source"]),
        "kind": sql.Literal(kind),
        "document_id": sql.SQL(source["document_id"]),
        "chunk_index": sql.SQL(source["chunk_index"]),
        "filter": conditions,
        "user_match": _USER_MATCH["approximate" if shape == "approximate" else "exact"],
        # the query vector in the column's type (halfvec spaces compare in halfvec)
        "query": sql.SQL("%(query)s::{}").format(sql.SQL(space.storage)),
        "ranked": sql.SQL(_RANKED).format(
            order=sql.SQL("distance" if shape == "approximate" else "distance, id")
        ),
    }
    if shape == "text":
        return sql.SQL(_TEXT).format(**parts)
    counted: dict[str, sql.Composable]
    if shape == "all":
        counted = {"counting": sql.SQL(""), "gate": sql.SQL(""), "answer": sql.SQL(_ANSWER)}
    else:
        counted = {
            "counting": sql.SQL(_COUNTING).format(
                kind=parts["kind"], other=sql.Literal(_OTHER[kind])
            ),
            "gate": sql.SQL(_GATES[shape]),
            "answer": sql.SQL(_COUNTED_ANSWER),
        }
    if shape == "approximate":
        matches = sql.SQL(_MATCHES).format(**parts)
        return sql.SQL(_APPROXIMATE).format(matches=matches, **counted, ranked=parts["ranked"])
    return sql.SQL(_EXACT).format(**parts, **counted)
