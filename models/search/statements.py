"""The SQL of a search: each statement a planner may send, composed for one space and query.

A vector statement searches one type of item (memories, or chunks of documents) on one scan:
``exact`` (the user's vectors measured one by one, through a window of the nearest),
``approximate`` (the HNSW index with pgvector's iterative scan for the user's indexed
vectors, and the unindexed rest measured one by one), both counted and gated by the user's
numbers of vectors; or ``all`` (exact, every vector, ungated), when a window or an
index scan came back short. A text statement ranks the user's items by full text for hybrid
mode. Why each statement is written as it is, with its measurements: docs/benchmarks.md,
"Why search is written as it is".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from models.db.batch import RowMaker, Statement, named
from models.db.scope import set_configs
from models.embedding.spaces import Space
from models.search.filters import FilterCompiler, containing
from models.search.query import SearchQuery
from models.store.items import LIVE_MEMORY
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

_COLUMNS = """
    {kind} AS type, m.id, m.content, m.metadata, m.session_id, m.importance,
    {document_id} AS document_id, {chunk_index} AS chunk_index, m.created_at, m.occurred_at
"""
# An item has at most one vector a space. A memory whose content was edited keeps its old
# vector until the new one replaces it: it stays findable (by its old meaning) meanwhile.
_FROM = """
    FROM {table} v
    JOIN {source} m ON m.user_id = v.user_id AND m.id = v.item_id
"""
# What every statement asks of the items themselves, beside the filter on their metadata.
_ITEM_CONDITIONS = f"""{LIVE_MEMORY}
      AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)
      AND (%(after)s::timestamptz IS NULL OR m.created_at >= %(after)s)
      AND (%(before)s::timestamptz IS NULL OR m.created_at < %(before)s)
      AND (%(occurred_after)s::timestamptz IS NULL OR m.occurred_at >= %(occurred_after)s)
      AND (%(occurred_before)s::timestamptz IS NULL OR m.occurred_at < %(occurred_before)s)
      AND {{filter}}"""
_WHERE = f"""
    WHERE {{user_match}} AND v.kind = {{kind}}
      AND {_ITEM_CONDITIONS}
"""
# Where each type of item comes from, with the same columns. A chunk is live while it
# belongs to its document's current generation; it carries its document's metadata.
_SOURCES = {
    "memory": {
        "source": "memories",
        "base": "memories",
        "matching": "memories_matching",
        "containing": "memories_containing",
        "document_id": "NULL::uuid",
        "chunk_index": "NULL::int",
    },
    "chunk": {
        "source": """(
            SELECT k.user_id, k.id, k.content, k.content_hash, d.metadata,
                   NULL::text AS session_id, NULL::float8 AS importance, k.document_id,
                   k.chunk_index, k.created_at, d.created_at AS occurred_at,
                   NULL::timestamptz AS expires_at, k.content_tsv, k.text_config
            FROM chunks k
            JOIN documents d ON d.user_id = k.user_id AND d.id = k.document_id
                            AND d.generation = k.generation)""",
        "base": "chunks",
        "matching": "chunks_matching",
        "containing": "chunks_containing",
        "document_id": "m.document_id",
        "chunk_index": "m.chunk_index",
    },
}
_MATCHES = "SELECT " + _COLUMNS + ", v.embedding <=> {query} AS distance" + _FROM + _WHERE
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
        SELECT {_COLUMNS}, v.distance FROM tail v
        JOIN {{source}} m ON m.user_id = %(user_id)s AND m.id = v.item_id
        WHERE {_ITEM_CONDITIONS}"""
_APPROXIMATE = f"""
    WITH {{counting}} {_TAIL}
    matches AS (
        ({{indexed}} AND v.indexed {{gate}} ORDER BY distance LIMIT %(limit)s)
        UNION ALL
        ({_TAIL_MATCHES})),
    ranked AS ({{ranked}})
    {{answer}}"""
# The HNSW path of a search with conditions on the items (metadata, session, times): a
# large user's items that meet them are found first, through the items' indexes (GIN on
# metadata), up to ``cap`` + 1 of them. When at most ``cap`` do, their vectors are all
# measured, as a user of that size would be, and only the nearest are joined to their items
# again; only when more do, the index is read (with pgvector's iterative scan, which looks
# further while the conditions reject). So a selective filter on a large user gets the
# exact answer, at the cost of a small one.
# Under row security the metadata index cannot serve a filter directly (``@>`` is not
# leakproof): when the filter names values the index can find, ``memories_containing`` /
# ``chunks_containing`` (migration 0022) find a superset of the matches through it, which
# the conditions then narrow; otherwise the user's items are read through their user index.
_CANDIDATES = {
    "scan": f"""
        SELECT m.id FROM {{source}} m
        WHERE m.user_id = %(user_id)s AND {_ITEM_CONDITIONS} {{gate}}
        LIMIT %(cap)s + 1""",
    "index": f"""
        SELECT m.id FROM {{containing}}(%(contains)s::jsonb[]) h
        JOIN {{source}} m ON m.user_id = %(user_id)s AND m.id = h.id
        WHERE {_ITEM_CONDITIONS} {{gate}}
        LIMIT %(cap)s + 1""",
}
_SELECTIVE = f"""
    WITH {{counting}} {_TAIL}
    candidates AS MATERIALIZED ({{candidates}}),
    selective AS MATERIALIZED (SELECT count(*) <= %(cap)s AS yes FROM candidates),
    nearest AS MATERIALIZED (
        SELECT c.id AS item_id, (v.embedding <=> {{query}}) + 0 AS distance
        FROM candidates c
        JOIN {{table}} v ON v.user_id = %(user_id)s AND v.item_id = c.id
        WHERE v.kind = {{kind}} AND (SELECT yes FROM selective)
        ORDER BY distance, c.id LIMIT %(limit)s),
    matches AS (
        (SELECT {_COLUMNS}, v.distance
         FROM nearest v
         JOIN {{source}} m ON m.user_id = %(user_id)s AND m.id = v.item_id)
        UNION ALL
        ({{indexed}} AND v.indexed AND NOT (SELECT yes FROM selective) {{gate}}
         ORDER BY distance LIMIT %(limit)s)
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
        SELECT {_COLUMNS}, v.distance
        FROM nearest v
        JOIN {{source}} m ON m.user_id = %(user_id)s AND m.id = v.item_id
        WHERE {_ITEM_CONDITIONS}),
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
    SELECT type, id, 1 - distance AS score, 1 - distance AS similarity, content, metadata,
           session_id, importance, document_id, chunk_index, created_at, occurred_at
    FROM matches
    WHERE %(max_distance)s::float8 IS NULL OR distance <= %(max_distance)s
    ORDER BY distance, id
    LIMIT %(limit)s
"""
# The text side of hybrid mode ranks by BM25 (Okapi, with Lucene's non-negative idf):
# score = sum over the query's terms t found in an item of
#   idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length)),
#   idf(t) = ln(1 + (n - df(t) + 0.5) / (df(t) + 0.5)),
# where n and the average length are the user's (items of this type indexed in this
# configuration, ``text_stats``), df(t) how many of those items hold t, tf how often the
# item holds it. The query's words are parsed in the search's configuration, which drops
# its stop words and stems the rest; its first ``MAX_TEXT_TERMS`` distinct terms count, so
# a query of thousands of words costs no more than one of a few dozen.
# Words many of a large user's items hold (Lucene's "common terms"): a term is common when
# the user has more than ``COMMON_FLOOR`` items of the type and more than ``COMMON_FLOOR``
# of them, and more than ``COMMON_SHARE`` of them, hold the term. Common terms score an item,
# but do not make it a candidate: the candidates are the items holding one of the other
# terms, or, when every term is common, the items holding all of them. So a query with a
# frequent word does not read tens of thousands of items of a large user, and a user of up
# to ``COMMON_FLOOR`` items is ranked over every item holding any term, as plain BM25 ranks.
# How common a term is comes from a sample (the user's first ``TEXT_SAMPLE`` items by id,
# every item up to that size), read only for users over ``COMMON_FLOOR`` items; a common
# term's df is its share of the sample times n, every other df is counted exactly.
# The candidates are found once, through the full-text index, by ``memories_matching`` /
# ``chunks_matching`` (migration 0019: under row security a full-text match could not use
# the index, as ``@@`` is not leakproof; those functions apply the policies' user condition
# themselves). tf and each one's length come from their terms (``postings``). Every
# candidate is scored before any is joined to its vector and checked against the search's
# conditions, best first, so only about ``limit`` items are read again. A score sums its
# terms in one order (the lexemes' bytes), so equal items score equally every time, and the
# sample is the same for the same items.
MAX_TEXT_TERMS = 64
BM25_K1 = 1.2
BM25_B = 0.75
COMMON_FLOOR = 1000
COMMON_SHARE = 0.01
TEXT_SAMPLE = 2000
_TEXT = f"""
    WITH terms AS MATERIALIZED (
        SELECT w.lexeme
        FROM unnest(to_tsvector(%(config)s::regconfig, %(text)s)) AS w
        ORDER BY w.positions[1] LIMIT %(max_terms)s),
    stats AS MATERIALIZED (
        SELECT greatest(coalesce(sum(s.items), 0), 1)::float8 AS n,
               greatest(coalesce(sum(s.terms)::float8 / nullif(sum(s.items), 0), 1), 1) AS avgdl
        FROM text_stats s
        WHERE s.user_id = %(user_id)s AND s.kind = {{kind}} AND s.config = %(config)s::regconfig),
    sampled AS MATERIALIZED (
        SELECT b.content_tsv FROM {{base}} b
        WHERE (SELECT n FROM stats) > %(common_floor)s
          AND b.user_id = %(user_id)s AND b.text_config = %(config)s::regconfig
        ORDER BY b.id LIMIT %(sample)s),
    classed AS MATERIALIZED (
        SELECT t.lexeme, c.share * st.n AS estimate,
               st.n > %(common_floor)s
               AND c.share * st.n > greatest(%(common_floor)s, %(common_share)s * st.n) AS common
        FROM terms t CROSS JOIN stats st
        CROSS JOIN LATERAL (
            SELECT coalesce(count(*) FILTER (
                       WHERE s.content_tsv @@ quote_literal(t.lexeme)::tsquery)::float8
                   / nullif(count(*), 0), 0) AS share
            FROM sampled s) c),
    holding AS MATERIALIZED (
        SELECT h.id, h.content_tsv FROM {{matching}}(
            (SELECT coalesce(CASE WHEN bool_and(common)
                                  THEN string_agg(quote_literal(lexeme), ' & ')
                                  ELSE string_agg(quote_literal(lexeme), ' | ')
                                       FILTER (WHERE NOT common) END, '')::tsquery
             FROM classed),
            %(config)s::regconfig) h),
    postings AS MATERIALIZED (
        SELECT h.id, u.lexeme, cardinality(u.positions) AS tf, l.length
        FROM holding h
        CROSS JOIN LATERAL (SELECT coalesce(sum(cardinality(positions)), 0) AS length
                            FROM unnest(h.content_tsv)) l
        CROSS JOIN LATERAL unnest(h.content_tsv) u
        WHERE u.lexeme IN (SELECT lexeme FROM terms)),
    weighed AS MATERIALIZED (
        SELECT c.lexeme, ln(1 + (st.n - d.df + 0.5) / (d.df + 0.5)) AS idf
        FROM classed c
        CROSS JOIN LATERAL (
            SELECT CASE WHEN c.common THEN c.estimate
                        ELSE (SELECT count(*) FROM postings p WHERE p.lexeme = c.lexeme)
                   END AS df) d
        CROSS JOIN stats st),
    ranked AS MATERIALIZED (
        SELECT p.id, sum(w.idf * p.tf * {BM25_K1 + 1} / (p.tf + {BM25_K1} * (
                   1 - {BM25_B} + {BM25_B} * p.length / st.avgdl)) ORDER BY p.lexeme COLLATE "C")
                   AS score
        FROM postings p JOIN weighed w ON w.lexeme = p.lexeme CROSS JOIN stats st
        GROUP BY p.id
        ORDER BY score DESC, p.id)
    SELECT {{kind}} AS type, m.id, r.score, 1 - (v.embedding <=> {{query}}) AS similarity,
           m.content, m.metadata, m.session_id, m.importance, {{document_id}} AS document_id,
           {{chunk_index}} AS chunk_index, m.created_at, m.occurred_at
    {_FROM}
    JOIN ranked r ON r.id = v.item_id
    {_WHERE}
      AND (%(max_distance)s::float8 IS NULL OR v.embedding <=> {{query}} <= %(max_distance)s)
    ORDER BY r.score DESC, r.id
    LIMIT %(limit)s
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
# items, which search every vector of the user or find the items first; the text search;
# the unwindowed "all") are planned for their values every time: PostgreSQL would switch a
# prepared statement to a generic plan after five runs, and a generic plan, which cannot
# know how many items a user has, may read every item of a large user.
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


def hnsw_settings(ef_search: int, limit: int) -> dict[str, str]:
    """The HNSW path's settings, for the rest of its transaction only (a pooled connection
    never carries them on). Without sorts and sequential scans, the HNSW index is the plan
    that gives order."""
    return {
        "hnsw.iterative_scan": "strict_order",
        "hnsw.ef_search": str(min(1000, max(ef_search, 2 * limit))),
        "hnsw.max_scan_tuples": "1000000",
        "enable_sort": "off",
        "enable_seqscan": "off",
    }


def counted_rows(names: Sequence[str]) -> RowMaker:
    """Rows of a counted statement as ``Counted``, the names read once per result."""
    vectors, unindexed, other, other_unindexed = (names.index(name) for name in _COUNTS)
    first = names.index("id")
    hit_fields = [(name, i) for i, name in enumerate(names) if name not in _COUNTS]

    def make(values: Sequence[Any]) -> Counted:
        hit = None if values[first] is None else SearchHit(**{n: values[i] for n, i in hit_fields})
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
            "space": space.name,
            "contains": [Jsonb(d) for d in documents or ()],
            **compiler.params,
        }

    def vector(self, kind: ItemType, scan: Scan) -> Statement:
        """A vector search of ``kind``: counted and gated ("exact", "approximate"), its rows
        ``Counted``; or "all", ungated, its rows hits."""
        if scan == "all":
            params = self.params | {"window": None}
            return self._statement(kind, scan, params, named(SearchHit))
        shape = "selective" if scan == "approximate" and self.filters_items else scan
        return self._statement(kind, shape, self.params, counted_rows)

    def text(self, kind: ItemType) -> Statement:
        """A full-text search of ``kind``, its rows hits scored by BM25."""
        params = self.params | {
            "config": self.text_config,
            "max_terms": MAX_TEXT_TERMS,
            "common_floor": COMMON_FLOOR,
            "common_share": COMMON_SHARE,
            "sample": TEXT_SAMPLE,
        }
        return self._statement(kind, "text", params, named(SearchHit))

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
    source = _SOURCES[kind]
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
        "ranked": sql.SQL(_RANKED),
    }
    if shape == "text":
        return sql.SQL(_TEXT).format(**parts)
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
