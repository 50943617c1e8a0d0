"""Re-ranking a search's candidates, as pure functions: fusion of two rankings, a blend of
recency and importance, and diversity. Formulas are in docs/api.md."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import numpy as np

from models.search.query import Fusion, Weights
from models.search.turns import asks_a_question
from models.types import SearchHit

# a question lifts the turn said just after it (its reply) this many times as much as it
# lifts any other turn near it
REPLY_LIFT = 2


def by_similarity(hits: list[SearchHit], depth: int) -> list[SearchHit]:
    """The ``depth`` most similar hits; ties go by id (UUIDs compare as Postgres compares
    them, and as their text sorts)."""
    return sorted(hits, key=lambda h: (-h.similarity, h.id))[:depth]


def by_score(hits: list[SearchHit], depth: int) -> list[SearchHit]:
    """The ``depth`` best-scored hits; ties go by id."""
    return sorted(hits, key=lambda h: (-h.score, h.id))[:depth]


def fuse(rankings: Sequence[tuple[list[SearchHit], float]], *, k: int) -> list[SearchHit]:
    """Weighted reciprocal rank fusion of (ranking, weight) pairs: score = sum over
    rankings of weight / (k + rank). Ties go to the more similar item, then by id, so equal
    inputs rank equally."""
    fused: dict[Any, float] = {}
    found: dict[Any, SearchHit] = {}
    for ranking, weight in rankings:
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.id] = fused.get(hit.id, 0.0) + weight / (k + rank)
            found.setdefault(hit.id, hit)
    return _by_fused_score([msgspec.structs.replace(found[i], score=fused[i]) for i in fused])


def best_ranks(rankings: Sequence[list[SearchHit]], *, k: int) -> list[SearchHit]:
    """Reciprocal rank fusion of rankings of one set of items by different models: an item
    in several keeps its best score, 1 / (k + rank), and the hit of that ranking, where
    ``fuse`` would add them up (counting an item twice for having two vectors). Ties go to
    the more similar item, then by id."""
    best: dict[Any, SearchHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            score = 1 / (k + rank)
            if hit.id not in best or score > best[hit.id].score:
                best[hit.id] = msgspec.structs.replace(hit, score=score)
    return _by_fused_score(list(best.values()))


def fuse_hybrid(vector: list[SearchHit], text: list[SearchHit], fusion: Fusion) -> list[SearchHit]:
    """The vector side's hits (by cosine similarity) and the text side's (``score``: BM25)
    fused as ``fusion`` says, best first."""
    if fusion.method == "ranks":
        return fuse([(vector, fusion.vector), (text, fusion.text)], k=fusion.k)
    return fuse_scores(vector, text, vector_weight=fusion.vector, text_weight=fusion.text)


def fuse_scores(
    vector: list[SearchHit], text: list[SearchHit], *, vector_weight: float, text_weight: float
) -> list[SearchHit]:
    """A weighted mean of each candidate's two scores, each rescaled to 0..1: the cosine
    similarity from the least to the greatest of every candidate's (the text side's hits
    carry theirs too); BM25 as a share of the best one's, so that an item the words do not
    find, and only such an item, has 0. Unlike ranks, the scores keep how far apart the
    candidates are: a clear winner on one side stays ahead of a close second on both. Ties
    go to the more similar item, then by id."""
    found: dict[Any, SearchHit] = {}
    for hit in (*vector, *text):
        found.setdefault(hit.id, hit)
    meaning = _rescaled({i: hit.similarity for i, hit in found.items()})
    words = _rescaled({hit.id: hit.score for hit in text}, low=0.0)
    total = vector_weight + text_weight
    return _by_fused_score(
        [
            msgspec.structs.replace(
                hit, score=(vector_weight * meaning[i] + text_weight * words.get(i, 0.0)) / total
            )
            for i, hit in found.items()
        ]
    )


def lift_nearby_turns(hits: list[SearchHit], weight: float, reach: int) -> list[SearchHit]:
    """Each hit that is a message (``seq`` known), plus ``weight`` times the best score of
    the hits said up to ``reach`` turns before or after it in its session, or, if the turn
    just before it asks a question, ``REPLY_LIFT`` times ``weight`` times that question's
    score when that is more. In a conversation what answers a question often sits near what
    matches it: the reply after a question, the rest of the exchange about one subject. The
    scores lifted from are the hits' own, not lifted ones. Ties go to the more similar item,
    then by id."""
    sessions: dict[str | None, list[SearchHit]] = {}
    for hit in hits:
        if hit.seq is not None:
            sessions.setdefault(hit.session_id, []).append(hit)
    if all(len(said) < 2 for said in sessions.values()):
        return hits
    lifts: dict[Any, float] = {}
    for said in sessions.values():  # each session's hits in the order said
        said.sort(key=lambda h: h.seq or 0)
        seqs = [h.seq or 0 for h in said]
        for i, hit in enumerate(said):
            seq = seqs[i]
            near = said[bisect_left(seqs, seq - reach) : bisect_right(seqs, seq + reach)]
            lift = weight * max((h.score for h in near if h is not hit), default=0.0)
            if i and seqs[i - 1] == seq - 1 and asks_a_question(said[i - 1].content):
                lift = max(lift, REPLY_LIFT * weight * said[i - 1].score)
            if lift:
                lifts[hit.id] = lift
    replace = msgspec.structs.replace
    return _by_fused_score(
        [replace(h, score=h.score + lifts[h.id]) if h.id in lifts else h for h in hits]
    )


def _by_fused_score(hits: list[SearchHit]) -> list[SearchHit]:
    """Best fused score first; ties go to the more similar item, then by id, so equal
    inputs rank equally."""
    return sorted(hits, key=lambda h: (-h.score, -h.similarity, h.id))


def _rescaled(values: dict[Any, float], *, low: float | None = None) -> dict[Any, float]:
    """Each value mapped linearly onto 0..1: ``low`` (by default the least value) to 0,
    the greatest to 1. When none is above ``low``: 1 each."""
    if not values:
        return {}
    high = max(values.values())
    low = min(values.values()) if low is None else low
    if high <= low:
        return dict.fromkeys(values, 1.0)
    return {i: (value - low) / (high - low) for i, value in values.items()}


def blend(hits: list[SearchHit], weights: Weights, *, now: datetime) -> list[SearchHit]:
    """score = (1 - r - i) * score + r * 0.5 ** (age_days / half_life) + i * importance."""
    keep = 1 - weights.recency - weights.importance

    def blended(hit: SearchHit) -> float:
        age_days = max(0.0, (now - hit.occurred_at).total_seconds() / 86400)
        recency = 0.5 ** (age_days / weights.half_life_days)
        importance = 0.5 if hit.importance is None else hit.importance
        return float(keep * hit.score + weights.recency * recency + weights.importance * importance)

    rescored = [msgspec.structs.replace(h, score=blended(h)) for h in hits]
    return sorted(rescored, key=lambda h: (-h.score, h.id))


def diversify(
    hits: list[SearchHit],
    embeddings: dict[Any, np.ndarray],
    *,
    diversity: float,
    k: int,
) -> list[SearchHit]:
    """Maximal marginal relevance with lambda = 1 - diversity, over the hits' unit
    ``embeddings`` (by id; a hit without one is left out).

    Each pick maximises lambda * score - (1 - lambda) * (max cosine to the picks so far).
    The reported score is that value, made non-increasing so results stay sorted by score.
    Each pick costs one matrix-vector product: ``k`` picks among ``n`` candidates of ``d``
    dimensions take O(k * n * d) arithmetic in numpy.
    """
    lam = 1 - diversity
    remaining = [h for h in hits if h.id in embeddings]
    if not remaining:
        return []
    vectors = np.stack([np.asarray(embeddings[h.id], dtype=np.float32) for h in remaining])
    scores = np.array([h.score for h in remaining], dtype=np.float64)
    # max cosine to the picks so far: 0 before the first pick, then the true maximum (which
    # may be negative)
    redundancy = np.zeros(len(remaining))
    available = np.ones(len(remaining), dtype=bool)
    picked: list[SearchHit] = []
    ceiling = math.inf
    while len(picked) < min(k, len(remaining)):
        values = np.where(available, lam * scores - (1 - lam) * redundancy, -np.inf)
        best = int(np.argmax(values))  # the first of equal values, as a scan in order picks
        ceiling = min(ceiling, float(values[best]))
        picked.append(msgspec.structs.replace(remaining[best], score=ceiling))
        available[best] = False
        similarity = (vectors @ vectors[best]).astype(np.float64)
        redundancy = similarity if len(picked) == 1 else np.maximum(redundancy, similarity)
    return picked
