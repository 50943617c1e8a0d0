"""Per-user search with complete results: which statements to send, round after round.

pgvector filters rows *after* an HNSW scan, so a user who owns a small share of the table
would get short answers from the index. We therefore search a user's vectors exactly when
they are few, and through HNSW with an iterative scan otherwise; an HNSW answer shorter than
asked is re-checked exactly, so a user with at least ``k`` matching items always gets ``k``
results. Only large users' vectors are in the HNSW index (tiered storage): one whose
vectors are still being indexed is searched exactly meanwhile.

A search is usually one round trip: each statement reads the user's vector counts itself
and searches only when its path is the right one; what this process lately learned of a
user's counts (``SizeHints``) picks the statements to send: the HNSW one for a large user,
none for a type of item the user has no vectors of. A second round follows only when the
first could not answer: the other path was the right one, a type left out has vectors
now, or a window or an index scan came back short (stale or expired items).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from models.db.batch import Statement
from models.db.scope import Reader
from models.embedding.spaces import Space
from models.search.hints import Hint, Path, SizeHints
from models.search.query import SearchQuery
from models.search.rerank import (
    blend,
    by_score,
    by_similarity,
    diversify,
    fuse_hybrid,
    lift_nearby_turns,
)
from models.search.statements import (
    CUSTOM_PLANS,
    GENERIC_PLANS,
    NO_PARALLEL_WORKERS,
    OTHER,
    UNINDEXED_MAX,
    Counted,
    Scan,
    Sizes,
    Statements,
    hnsw_settings,
    settings_statement,
)
from models.settings import SearchOptions
from models.types import ItemType, SearchHit

MAX_ROUNDS = 3


class VectorAsk(NamedTuple):
    """A vector statement of a round: which type of item, on which scan."""

    kind: ItemType
    scan: Scan


class TextAsk(NamedTuple):
    """A text statement of a round (hybrid mode)."""

    kind: ItemType


class Round(NamedTuple):
    """One batch to send: what each statement asks (None: it only sets settings), the
    statements, and the settings of the whole batch."""

    asks: list[VectorAsk | TextAsk | None]
    statements: list[Statement]
    settings: dict[str, str]


class Planner:
    """What a search still has to ask, given what it was answered so far."""

    def __init__(
        self,
        space: Space,
        user_id: str,
        query: SearchQuery,
        *,
        exact_max_rows: int,
        ef_search: int,
        hints: SizeHints | None,
    ) -> None:
        self.space, self.user_id, self.query = space, user_id, query
        self.exact_max_rows, self.ef_search, self.hints = exact_max_rows, ef_search, hints
        self.statements = Statements(space, user_id, query, cap=exact_max_rows)
        self.rounds = 0
        self.found: dict[ItemType, list[SearchHit]] = {}
        self.text_found: dict[ItemType, list[SearchHit]] = {}
        self.text: list[ItemType] = list(query.types if query.hybrid else ())
        hinted = {kind: self._hint(kind) for kind in query.types}
        # a type without vectors is left out only while another type's statement vouches
        sent = [kind for kind in query.types if hinted[kind] != "none"] or list(query.types[:1])
        self.pending: dict[ItemType, Scan] = {}
        for kind in sent:
            hint = hinted[kind]
            self.pending[kind] = "exact" if hint == "none" else hint
        self.unsent = {kind for kind in query.types if kind not in self.pending}

    def next_round(self) -> Round | None:
        """The next batch to send, or None when the search has its answer."""
        if self.rounds == MAX_ROUNDS or not (self.pending or self.text):
            return None
        asks: list[VectorAsk | TextAsk | None] = []
        statements: list[Statement] = []
        for kind, scan in self.pending.items():
            if scan != "approximate":
                asks.append(VectorAsk(kind, scan))
                statements.append(self.statements.vector(kind, scan))
        for kind in self.text:
            asks.append(TextAsk(kind))
            statements.append(self.statements.text(kind))
        settings = dict(NO_PARALLEL_WORKERS)
        if self.query.filters_items or "all" in self.pending.values():
            settings |= CUSTOM_PLANS
        elif not self.text:
            settings |= GENERIC_PLANS
        # The HNSW settings (no sorts, no sequential scans) must not reach the other
        # statements' plans: they go with the scope when only HNSW statements follow, else
        # in a statement of their own after the others.
        hnsw = hnsw_settings(self.ef_search, self.query.depth, filtered=self.query.filters_items)
        approximate = [kind for kind, scan in self.pending.items() if scan == "approximate"]
        if approximate and not statements:
            settings |= hnsw
        elif approximate:
            asks.append(None)
            statements.append(settings_statement(hnsw))
        for kind in approximate:
            asks.append(VectorAsk(kind, "approximate"))
            statements.append(self.statements.vector(kind, "approximate"))
        return Round(asks, statements, settings)

    def take(self, round_: Round, results: list[list[Any]]) -> None:
        """Learn from a round's answers what is found and what the next round must ask."""
        self.pending, self.text = {}, []
        for ask, rows in zip(round_.asks, results, strict=True):
            if isinstance(ask, TextAsk):
                self.text_found[ask.kind] = rows
            elif isinstance(ask, VectorAsk) and ask.scan == "all":
                self.found[ask.kind] = rows
            elif isinstance(ask, VectorAsk):
                self._take_counted(ask, rows)
        self.rounds += 1

    def vector_hits(self) -> list[SearchHit]:
        """The best hits by similarity, every type together."""
        found = [hit for kind in self.query.types for hit in self.found.get(kind, ())]
        return by_similarity(found, self.query.depth)

    def text_hits(self) -> list[SearchHit]:
        """The best hits by BM25, every type together."""
        return by_score([h for rows in self.text_found.values() for h in rows], self.query.depth)

    def _take_counted(self, ask: VectorAsk, rows: list[Counted]) -> None:
        sizes, other_sizes = rows[0].sizes, rows[0].other
        other = OTHER[ask.kind]
        self._remember(ask.kind, sizes)
        self._remember(other, other_sizes)
        if other in self.unsent:  # left out as empty: search it after all if it is not
            self.unsent.discard(other)
            if other_sizes.vectors:
                self.pending[other] = self._path(other_sizes)
        right = self._path(sizes)
        hits = [row.hit for row in rows if row.hit is not None]
        window = self.statements.window
        complete = len(hits) >= self.query.depth or (
            ask.scan == "exact" and (window is None or sizes.vectors <= window)
        )
        if ask.scan == right and complete:
            self.found[ask.kind] = hits
        elif ask.scan != right and self.rounds == 0:  # the other path was the right one
            self.pending[ask.kind] = right
        else:  # a short window or index scan: at last, everything
            self.pending[ask.kind] = "all"

    def _path(self, sizes: Sizes) -> Path:
        """The statements' gates (``models.search.statements``), in Python."""
        indexed = sizes.vectors - sizes.unindexed > self.exact_max_rows
        return "approximate" if indexed and sizes.unindexed <= UNINDEXED_MAX else "exact"

    def _hint(self, kind: ItemType) -> Hint:
        if self.hints is None:
            return "exact"
        return self.hints.path(self.space.name, self.user_id, kind)

    def _remember(self, kind: ItemType, sizes: Sizes) -> None:
        if self.hints is not None:
            hint: Hint = self._path(sizes) if sizes.vectors else "none"
            self.hints.remember(self.space.name, self.user_id, kind, hint)


async def search(
    read: Reader,
    space: Space,
    user_id: str,
    query: SearchQuery,
    *,
    exact_max_rows: int,
    ef_search: int = SearchOptions().hnsw_ef_search,
    hints: SizeHints | None = None,
) -> list[SearchHit]:
    """The ``query.k`` best items of ``user_id``, best first; ``read`` runs each round's
    batch in one round trip. Hybrid mode fuses the vector and text rankings (and lifts the
    turns said next to a strong hit), ``weights`` blend in recency and importance, and
    ``diversity`` reads the candidates' vectors last."""
    plan = Planner(
        space, user_id, query, exact_max_rows=exact_max_rows, ef_search=ef_search, hints=hints
    )
    while (round_ := plan.next_round()) is not None:
        plan.take(round_, await read(round_.statements, round_.settings))
    hits = plan.vector_hits()
    if query.hybrid:
        hits = fuse_hybrid(hits, plan.text_hits(), query.fusion)
        if query.fusion.turns > 0:
            hits = lift_nearby_turns(hits, query.fusion.turns, query.fusion.reach)
    if query.weights is not None:
        hits = blend(hits, query.weights, now=datetime.now(UTC))
    if query.diversity > 0:
        (rows,) = await read([plan.statements.vectors([h.id for h in hits])], {})
        embeddings = {row.item_id: np.asarray(row.embedding.to_numpy(), np.float32) for row in rows}
        hits = diversify(hits, embeddings, diversity=query.diversity, k=query.k)
    return hits[: query.k]
