"""The SQL of a search: each statement a planner may send, composed for one space and query.

A vector statement searches one type of item (memories, or chunks of documents) on one scan:
``exact`` (the user's vectors measured one by one, through a window of the nearest),
``approximate`` (the HNSW index with pgvector's iterative scan for the user's indexed
vectors, and the unindexed rest measured one by one), both counted and gated by the user's
numbers of vectors (with conditions on the items, a large user's matching items are found
first, and measured exactly when they are few); or ``all`` (exact, every vector, ungated),
when a window or an index scan came back short. A text statement ranks the user's items by
BM25 for hybrid mode (its SQL: ``bm25.py``). What they all share: ``sources.py``. Why each
statement is written as it is, with its measurements: docs/benchmarks.md, "Why search is
written as it is".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Literal, NamedTuple

import msgspec
from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from models.db.batch import RowMaker, Statement, named
from models.db.scope import set_configs
from models.embedding.spaces import Space
from models.search import bm25
from models.search.filters import FilterCompiler, containing
from models.search.query import SearchQuery
from models.search.sources import COLUMNS, FROM, ITEM_CONDITIONS, PLACED, SOURCES, WHERE
from models.search.turns import FILLED_IN
from models.types import ItemType, SearchHit

Scan = Literal["exact", "approximate", "all"]

# Nearest vectors looked at per result wanted, before their items are checked (expired,
# filtered out); an answer that comes back short is searched again without a window.
WINDOW_PER_RESULT = 2
WINDOW_SLACK = 20
# Each counted statement also reports the count of the other type of item.
OTHER: dict[ItemType, ItemType] = {"memory": "chunk", "chunk": "memory"}
# Only indexed vectors are in a space's HNSW index (tiered storage, migration 0021); the
# worker's indexer indexes the vectors of users above the exact-search limit. The HNSW path
# serves a user whose indexed vectors alone are over that limit while at most this many
# others wait to be indexed, and measures those exactly; otherwise (a user who just crossed
# the limit, a large import) the exact path serves them.
UNINDEXED_MAX = 2000
# A large user's items that a search's conditions leave are measured exactly when they are
# at most this many; more, and the HNSW index is read with those conditions: the index
# misses true neighbours when the conditions leave a small share of the user, and is exact
# and faster than measuring them all when they leave a large one: at about this many, the
# two cost the same (docs/benchmarks.md).
SELECTIVE_MAX = 6000
# The HNSW index read with conditions on the items returns the nearest it finds in relaxed
# order, so this many more than wanted are read and the best kept (docs/benchmarks.md).
RELAXED_SLACK = 10

_MATCHES = "SELECT " + COLUMNS + ", v.embedding <=> {query} AS distance" + FROM + WHERE
# The HNSW path: the nearest of the user's indexed vectors in the index's order, beside all
# of the user's unindexed ones (at most ``UNINDEXED_MAX``, the ``tail``), the best of both
# ranked. The index scan is ordered by distance alone, the order it gives: breaking ties by
# id as well would sort, and so fetch one row more than the limit from the scan. The tail
# is read alone first, through the index of unindexed vectors, and then joined to its items:
# a generic plan would otherwise read every item of the user to find the few.
_TAIL = """tail AS MATERIALIZED (
        SELECT v.item_id, v.embedding <=> {query} AS distance FROM {table} v
        WHERE v.user_id = %(user_id)s AND v.kind = {kind} AND NOT v.indexed {gate}),"""
_TAIL_MATCHES = f"""
        SELECT {COLUMNS}, v.distance FROM tail v
        JOIN {{source}} m ON m.user_id = %(user_id)s AND m.id = v.item_id
        WHERE {ITEM_CONDITIONS}"""
_APPROXIMATE = f"""
    WITH {{counting}} {_TAIL}
    matches AS (
        ({{indexed}} AND v.indexed {{gate}} ORDER BY distance LIMIT %(limit)s)
        UNION ALL
        ({_TAIL_MATCHES})),
    ranked AS ({{ranked}})
    {{answer}}"""
# The HNSW path of a search with conditions on the items (metadata, session, times): a
# large user's candidate items are found first, up to ``SELECTIVE_MAX`` + 1 of them. When
# at most ``SELECTIVE_MAX`` are, their vectors are all measured (read through the vectors'
# key in one index scan, which takes each item once), and the nearest
# ``2k + 20`` are joined to their items and checked against the conditions (an answer left short
# is searched again in full, the planner's ``all`` scan); only when more are, the index is
# read with the conditions (pgvector's iterative scan, which looks further while they
# reject; in relaxed order, as ``hnsw_settings`` says, so ``RELAXED_SLACK`` more are read
# and the best kept). So a selective filter on a large user gets the exact answer, at the
# cost of a small one.
# Under row security the metadata index cannot serve a filter directly (``@>`` is not
# leakproof): when the filter names values an index can find, ``memories_containing`` /
# ``chunks_containing`` (migrations 0022, 0027, 0028) return the items holding them, a
# superset of the matches, through an index keyed by user and value, one value at a time
# (an item holding two of the values comes twice: counted twice, measured once), and stop
# at the count asked for; otherwise the candidates are the user's items that meet the
# conditions, read through their user index.
_CANDIDATES = {
    "scan": f"""
        SELECT m.id FROM {{source}} m
        WHERE m.user_id = %(user_id)s AND {ITEM_CONDITIONS} {{gate}}
        LIMIT %(selective_max)s + 1""",
    "index": """
        SELECT h.id FROM {containing}(%(contains)s::jsonb[], %(selective_max)s + 1) h
        WHERE TRUE {gate}""",
}
_SELECTIVE = f"""
    WITH {{counting}} {_TAIL}
    candidates AS MATERIALIZED ({{candidates}}),
    selective AS MATERIALIZED (SELECT count(*) <= %(selective_max)s AS yes FROM candidates),
    nearest AS MATERIALIZED (
        SELECT v.item_id, (v.embedding <=> {{query}}) + 0 AS distance
        FROM {{table}} v
        WHERE v.user_id = %(user_id)s AND v.item_id = ANY(ARRAY(SELECT id FROM candidates))
          AND v.kind = {{kind}} AND (SELECT yes FROM selective)
        ORDER BY distance, v.item_id LIMIT %(nearest)s),
    matches AS (
        (SELECT {COLUMNS}, v.distance
         FROM nearest v
         JOIN {{source}} m ON m.user_id = %(user_id)s AND m.id = v.item_id
         WHERE {ITEM_CONDITIONS})
        UNION ALL
        ({{indexed}} AND v.indexed AND NOT (SELECT yes FROM selective) {{gate}}
         ORDER BY distance LIMIT %(limit)s + %(relaxed_slack)s)
        UNION ALL
        ({_TAIL_MATCHES} AND NOT (SELECT yes FROM selective))),
    ranked AS ({{ranked}})
    {{answer}}"""
# The exact scan measures the user's vectors alone first, keeps the nearest ``window`` of
# them, and only then joins their items. Its order, ``distance + 0``, is one that no index
# offers, so the planner cannot reach for the HNSW index (which would filter by user after
# the fact). ``window`` is NULL (no limit) when filters on the items could reject many.
_EXACT = f"""
    WITH {{counting}}
    nearest AS (
        SELECT v.item_id, (v.embedding <=> {{query}}) + 0 AS distance
        FROM {{table}} v WHERE v.user_id = %(user_id)s AND v.kind = {{kind}} {{gate}}
        ORDER BY distance, v.item_id LIMIT %(window)s),
    matches AS (
        SELECT {COLUMNS}, v.distance
        FROM nearest v
        JOIN {{source}} m ON m.user_id = %(user_id)s AND m.id = v.item_id
        WHERE {ITEM_CONDITIONS}),
    ranked AS ({{ranked}})
    {{answer}}"""
# The exact and HNSW statements both read the user's numbers of vectors and of unindexed
# vectors (kept by triggers, migrations 0011 and 0021): the HNSW one searches only when
# more than ``cap`` are indexed and at most ``unindexed_max`` are not, the exact one only
# otherwise. The gates are one-time filters, so the statement not taken
# costs its count alone. Their rows carry the counts of their own type and of the other one
# (which vouches for a type not searched), and there is a row even when nothing is found.
_COUNTING = """counted AS MATERIALIZED (
        SELECT coalesce(sum(vectors) FILTER (WHERE kind = {kind}), 0) AS n,
               coalesce(sum(unindexed) FILTER (WHERE kind = {kind}), 0) AS unindexed,
               coalesce(sum(vectors) FILTER (WHERE kind = {other}), 0) AS other_n,
               coalesce(sum(unindexed) FILTER (WHERE kind = {other}), 0) AS other_unindexed
        FROM vector_counts WHERE user_id = %(user_id)s AND space = %(space)s),"""
_GATES = {
    "exact": "AND ((SELECT n - unindexed FROM counted) <= %(cap)s "
    "OR (SELECT unindexed FROM counted) > %(unindexed_max)s)",
    "approximate": "AND (SELECT n - unindexed FROM counted) > %(cap)s "
    "AND (SELECT unindexed FROM counted) <= %(unindexed_max)s",
}
_COUNTS = ("counted", "unindexed", "other_n", "other_unindexed")
# The fields of a hit that the statements' columns give, in the order ``SearchHit`` takes
# them (its neighbours are read after the search when asked: ``models.search.turns``).
_HIT_FIELDS = tuple(f.name for f in msgspec.structs.fields(SearchHit) if f.name not in FILLED_IN)
_COUNTED_ANSWER = (
    "SELECT c.n AS counted, c.unindexed, c.other_n, c.other_unindexed, r.* "
    "FROM counted c LEFT JOIN ranked r ON true ORDER BY r.score DESC, r.id"
)
_ANSWER = "SELECT * FROM ranked ORDER BY score DESC, id"
# How the HNSW path and hybrid mode find the user's vectors. For the HNSW path the
# condition is written so that no user_id index can serve it: otherwise the planner prefers
# sorting every distance of a large user to the index scan it should take.
_USER_MATCH = {
    "exact": sql.SQL("v.user_id = %(user_id)s"),
    "approximate": sql.SQL("(v.user_id || '') = %(user_id)s"),
}
_RANKED = """
    SELECT hit.*, p.message_id, p.seq
    FROM (
        SELECT type, id, 1 - distance AS score, 1 - distance AS similarity, content, metadata,
               session_id, importance, document_id, chunk_index, created_at, occurred_at
        FROM matches
        WHERE %(max_distance)s::float8 IS NULL OR distance <= %(max_distance)s
        ORDER BY distance, id
        LIMIT %(limit)s) hit
    {placed}
"""
_VECTORS = (
    "SELECT item_id, embedding FROM {} WHERE user_id = %(user_id)s AND item_id = ANY(%(ids)s)"
)

# For the rest of the search's transaction: the exact statement that a large user does not
# take would still start its parallel workers before its gate says no, and exact scans of
# up to the cap run no faster in parallel on a small machine.
NO_PARALLEL_WORKERS = {"max_parallel_workers_per_gather": "0"}
# Planning the counted statements anew for every search (PostgreSQL's choice for them) costs
# more than running them for small users; their generic plans, made once per connection,
# are as fast as custom ones. Statements whose plans depend on their values (filters on the
# items, which search every vector of the user or find the items first; the unwindowed
# "all") are planned for their values every time: PostgreSQL would switch a prepared
# statement to a generic plan after five runs, and a generic plan, which cannot know how
# many items a user has, may read every item of a large user. The text search's rounds
# leave the choice to PostgreSQL: planning its statement anew every time doubled a small
# user's hybrid search.
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}
CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}


class Sizes(NamedTuple):
    """A user's number of vectors of one type in a space, and how many are unindexed."""

    vectors: int
    unindexed: int


class Counted(NamedTuple):
    """A row of a counted statement: the user's sizes of its type and of the other type,
    and a hit (None in the one row of a statement that found nothing)."""

    sizes: Sizes
    other: Sizes
    hit: SearchHit | None


class ItemVector(NamedTuple):
    """A candidate's vector, for diversity."""

    item_id: Any
    embedding: Any


def hnsw_settings(ef_search: int, limit: int, *, filtered: bool = False) -> dict[str, str]:
    """The HNSW path's settings, for the rest of its transaction only (a pooled connection
    never carries them on). Without sorts and sequential scans, the HNSW index is the plan
    that gives order. Without hash and merge joins, what the index, the unindexed tail or a
    filter's candidates found is joined to its items by their key: the planner cannot know
    that the tail is empty or small, and a hash join reads every item of a large user to
    build its table. A ``filtered`` read, whose conditions reject most of what the index
    finds, continues in relaxed order: in strict order, pgvector drops a vector found after
    a farther one was returned, and so misses some of the nearest matches of a filter that
    a few percent of a large user meet (docs/benchmarks.md)."""
    return {
        "hnsw.iterative_scan": "relaxed_order" if filtered else "strict_order",
        "hnsw.ef_search": str(min(1000, max(ef_search, 2 * limit))),
        "hnsw.max_scan_tuples": "1000000",
        "enable_sort": "off",
        "enable_seqscan": "off",
        "enable_hashjoin": "off",
        "enable_mergejoin": "off",
    }


def hit_rows(names: Sequence[str]) -> Callable[[Sequence[Any]], SearchHit]:
    """Rows as ``SearchHit``, each field from the column of its name; the columns are
    matched to the fields once per result, and each hit is built by field position."""
    fields = itemgetter(*(names.index(name) for name in _HIT_FIELDS))
    return lambda values: SearchHit(*fields(values))


def counted_rows(names: Sequence[str]) -> RowMaker:
    """Rows of a counted statement as ``Counted``, the names read once per result."""
    vectors, unindexed, other, other_unindexed = (names.index(name) for name in _COUNTS)
    first = names.index("id")
    make_hit = hit_rows(names)

    def make(values: Sequence[Any]) -> Counted:
        hit = None if values[first] is None else make_hit(values)
        sizes = Sizes(int(values[vectors]), int(values[unindexed]))
        return Counted(sizes, Sizes(int(values[other]), int(values[other_unindexed])), hit)

    return make


# Composed statements without a metadata filter, by (table, storage, type, scan): composing
# costs about as much as searching a small user, and these few repeat.
_COMPOSED: dict[tuple[str, ...], str] = {}


class Statements:
    """The statements of one search: composed for its space, filter and parameters."""

    def __init__(self, space: Space, user_id: str, query: SearchQuery, *, cap: int) -> None:
        compiler = FilterCompiler()
        self.space = space
        self.text_config = query.text_config
        self.conditions = compiler.compile(query.metadata or {})
        self.cacheable = not query.metadata  # a metadata filter is composed for its query
        self.filters_items = query.filters_items
        documents = containing(query.metadata or {})
        depth = query.depth
        # None: filters on the items could reject many of the nearest vectors
        self.window = None if query.filters_items else depth * WINDOW_PER_RESULT + WINDOW_SLACK
        self.params: dict[str, Any] = {
            "query": Vector(query.vector),
            "user_id": user_id,
            "session_id": query.session_id,
            "after": query.created_after,
            "before": query.created_before,
            "occurred_after": query.occurred_after,
            "occurred_before": query.occurred_before,
            "max_distance": None if query.threshold is None else 1 - query.threshold,
            "text": query.text,
            "limit": depth,
            "cap": cap,
            "unindexed_max": UNINDEXED_MAX,
            "window": self.window,
            "nearest": depth * WINDOW_PER_RESULT + WINDOW_SLACK,
            "selective_max": SELECTIVE_MAX,
            "relaxed_slack": RELAXED_SLACK,
            "space": space.name,
            "contains": [Jsonb(d) for d in documents or ()],
            **compiler.params,
        }

    def vector(self, kind: ItemType, scan: Scan) -> Statement:
        """A vector search of ``kind``: counted and gated ("exact", "approximate"), its rows
        ``Counted``; or "all", ungated, its rows hits."""
        if scan == "all":
            params = self.params | {"window": None}
            return self._statement(kind, scan, params, hit_rows)
        shape = "selective" if scan == "approximate" and self.filters_items else scan
        return self._statement(kind, shape, self.params, counted_rows)

    def text(self, kind: ItemType) -> Statement:
        """A full-text search of ``kind``, its rows hits scored by BM25."""
        params = self.params | {
            "config": self.text_config,
            "max_terms": bm25.MAX_TEXT_TERMS,
            "common_floor": bm25.COMMON_FLOOR,
            "common_share": bm25.COMMON_SHARE,
            "sample": bm25.TEXT_SAMPLE,
            "sample_hits": bm25.SAMPLE_HITS,
        }
        return self._statement(kind, "text", params, hit_rows)

    def vectors(self, ids: list[Any]) -> Statement:
        """The vectors of these items, as ``ItemVector`` rows."""
        query = sql.SQL(_VECTORS).format(sql.Identifier(self.space.table)).as_string()
        params = {"user_id": self.params["user_id"], "ids": ids}
        return Statement(query, params, rows=named(ItemVector))

    def _statement(
        self, kind: ItemType, shape: str, params: dict[str, Any], rows: Any
    ) -> Statement:
        return Statement(self._compose(kind, shape), params, rows=rows, prepare=self.cacheable)

    def _compose(self, kind: ItemType, shape: str) -> str:
        if not self.cacheable:
            indexed = bool(self.params["contains"])
            return _compose(self.space, kind, shape, self.conditions, indexed).as_string()
        key = (self.space.table, self.space.storage, kind, shape)
        if key not in _COMPOSED:
            _COMPOSED[key] = _compose(self.space, kind, shape, self.conditions).as_string()
        return _COMPOSED[key]


def settings_statement(settings: dict[str, str]) -> Statement:
    """A statement that only sets ``settings`` for the rest of the transaction."""
    return Statement(*set_configs(settings), rows=None)


def _compose(
    space: Space,
    kind: ItemType,
    shape: str,
    conditions: sql.Composable,
    indexed_filter: bool = False,
) -> sql.Composed:
    """The statement of ``shape``; ``indexed_filter``: the metadata index finds the
    candidates of a selective search (``_CANDIDATES``)."""
    source = SOURCES[kind]
    placed = sql.SQL(PLACED[kind])
    parts = {
        "table": sql.Identifier(space.table),
        "source": sql.SQL(source["source"]),
        "base": sql.Identifier(source["base"]),
        "matching": sql.Identifier(source["matching"]),
        "containing": sql.Identifier(source["containing"]),
        "kind": sql.Literal(kind),
        "document_id": sql.SQL(source["document_id"]),
        "chunk_index": sql.SQL(source["chunk_index"]),
        "filter": conditions,
        "user_match": _USER_MATCH[
            "approximate" if shape in ("approximate", "selective") else "exact"
        ],
        # the query vector in the column's type (halfvec spaces compare in halfvec)
        "query": sql.SQL("%(query)s::{}").format(sql.SQL(space.storage)),
        "placed": placed,
        "ranked": sql.SQL(_RANKED).format(placed=placed),
    }
    if shape == "text":
        return sql.SQL(bm25.TEXT).format(**parts)
    counted: dict[str, sql.Composable]
    if shape == "all":
        counted = {"counting": sql.SQL(""), "gate": sql.SQL(""), "answer": sql.SQL(_ANSWER)}
    else:
        counted = {
            "counting": sql.SQL(_COUNTING).format(
                kind=parts["kind"], other=sql.Literal(OTHER[kind])
            ),
            "gate": sql.SQL(_GATES["exact" if shape == "exact" else "approximate"]),
            "answer": sql.SQL(_COUNTED_ANSWER),
        }
    if shape in ("approximate", "selective"):
        indexed = sql.SQL(_MATCHES).format(**parts)
        template = _APPROXIMATE if shape == "approximate" else _SELECTIVE
        candidates = sql.SQL(_CANDIDATES["index" if indexed_filter else "scan"]).format(
            **parts, **counted
        )
        return sql.SQL(template).format(**parts, indexed=indexed, candidates=candidates, **counted)
    return sql.SQL(_EXACT).format(**parts, **counted)
