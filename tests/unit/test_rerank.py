"""Re-ranking as pure functions: reciprocal rank fusion, the recency and importance blend,
and maximal marginal relevance. No server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from models.search.query import Fusion, Weights
from models.search.rerank import blend, by_score, by_similarity, diversify, fuse
from models.types import SearchHit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RRF_K = Fusion().k


def hit(
    score: float, *, days_old: float = 0, importance: float | None = None, **extra
) -> SearchHit:
    fields = {"type": "memory", "id": uuid.uuid4(), "score": score, "similarity": score,
              "content": "x", "metadata": {}, "session_id": None, "importance": importance,
              "document_id": None, "chunk_index": None,
              "created_at": NOW, "occurred_at": NOW - timedelta(days=days_old),
              **extra}  # fmt: skip
    return SearchHit(**fields)


def test_fusion_adds_each_rankings_reciprocal_rank():
    a, b, c = hit(0.9), hit(0.8), hit(0.7)
    fused = fuse([([a, b, c], 1.0), ([c, a], 1.0)], k=RRF_K)
    scores = {h.id: h.score for h in fused}
    assert scores[a.id] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert scores[c.id] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert scores[b.id] == pytest.approx(1 / (RRF_K + 2))
    assert [h.id for h in fused] == [a.id, c.id, b.id]


def test_fusion_breaks_ties_by_similarity_then_id():
    first, second = hit(0.5), hit(0.9)  # ranked first in one list each: equal fused scores
    assert [h.id for h in fuse([([first], 1.0), ([second], 1.0)], k=RRF_K)] == [second.id, first.id]
    twins = [hit(0.5, id=uuid.UUID(int=2)), hit(0.5, id=uuid.UUID(int=1))]
    fused = fuse([([twins[0]], 1.0), ([twins[1]], 1.0)], k=RRF_K)
    assert [h.id.int for h in fused] == [1, 2]


def test_fusion_of_one_ranking_keeps_its_order():
    ranking = [hit(0.9), hit(0.8), hit(0.1)]
    assert [h.id for h in fuse([(ranking, 1.0), ([], 1.0)], k=RRF_K)] == [h.id for h in ranking]


def test_weighted_fusion_scales_each_ranking_and_takes_its_constant():
    a, b = hit(0.9), hit(0.8)
    fused = fuse([([a, b], 2.0), ([b, a], 0.5)], k=1)
    scores = {h.id: h.score for h in fused}
    assert scores[a.id] == pytest.approx(2.0 / 2 + 0.5 / 3)
    assert scores[b.id] == pytest.approx(2.0 / 3 + 0.5 / 2)
    text_only = fuse([([a, b], 0.0), ([b, a], 1.0)], k=RRF_K)
    assert [h.id for h in text_only] == [b.id, a.id]


def test_text_ranking_ties_go_by_id():
    twins = [hit(0.5, id=uuid.UUID(int=n)) for n in (3, 1, 2)]
    assert [h.id.int for h in by_score(twins, 3)] == [1, 2, 3]


def test_blend_weighs_recency_by_half_life_and_importance():
    weights = Weights(recency=0.3, importance=0.2, half_life_days=10)
    fresh = hit(0.5, days_old=0, importance=1.0)
    old = hit(0.5, days_old=10, importance=None)  # half-life: recency 0.5; importance 0.5
    blended = {h.id: h.score for h in blend([old, fresh], weights, now=NOW)}
    assert blended[fresh.id] == pytest.approx(0.5 * 0.5 + 0.3 * 1.0 + 0.2 * 1.0)
    assert blended[old.id] == pytest.approx(0.5 * 0.5 + 0.3 * 0.5 + 0.2 * 0.5)


def test_blend_sorts_by_the_new_score_and_never_counts_the_future():
    future = hit(0.2, days_old=-5)  # a clock ahead of ours: as fresh as now, no fresher
    past = hit(0.9, days_old=30)
    ordered = blend([past, future], Weights(recency=1.0), now=NOW)
    assert [h.id for h in ordered] == [future.id, past.id]
    assert ordered[0].score == pytest.approx(1.0)


def test_without_weight_blend_keeps_scores():
    hits = [hit(0.9), hit(0.4)]
    assert [h.score for h in blend(hits, Weights(), now=NOW)] == [0.9, 0.4]


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_diversity_picks_the_best_then_what_is_least_like_it():
    best, twin, other = hit(0.9), hit(0.89), hit(0.7)
    embeddings = {best.id: unit(1, 0), twin.id: unit(1, 0.01), other.id: unit(0, 1)}
    picked = diversify([best, twin, other], embeddings, diversity=0.5, k=2)
    assert [h.id for h in picked] == [best.id, other.id]


def test_no_diversity_keeps_the_order_of_relevance():
    hits = [hit(0.9), hit(0.89), hit(0.7)]
    embeddings = {h.id: unit(1, i) for i, h in enumerate(hits)}
    picked = diversify(hits, embeddings, diversity=0.0, k=3)
    assert [h.id for h in picked] == [h.id for h in hits]


def test_diversified_scores_never_increase_and_items_without_vectors_are_left_out():
    hits = [hit(0.9), hit(0.85), hit(0.8), hit(0.75)]
    embeddings = {h.id: unit(1, i * 0.3) for i, h in enumerate(hits[:3])}
    picked = diversify(hits, embeddings, diversity=0.7, k=4)
    assert len(picked) == 3 and hits[3].id not in {h.id for h in picked}
    scores = [h.score for h in picked]
    assert scores == sorted(scores, reverse=True)


def test_similarity_order_breaks_ties_by_id_and_cuts_at_depth():
    tied = [hit(0.5, id=uuid.UUID(int=n)) for n in (3, 1, 2)]
    assert [h.id.int for h in by_similarity([*tied, hit(0.1)], 3)] == [1, 2, 3]


def reference_mmr(hits, embeddings, *, diversity, k):
    """MMR written as its definition reads, one candidate at a time."""
    lam = 1 - diversity
    remaining = [h for h in hits if h.id in embeddings]
    picked, ceiling = [], float("inf")
    while remaining and len(picked) < k:

        def value(h):
            redundancy = max((float(embeddings[h.id] @ embeddings[p.id]) for p, _ in picked),
                             default=0.0)  # fmt: skip
            return lam * h.score - (1 - lam) * redundancy

        best = max(remaining, key=value)  # the first of equal values
        ceiling = min(ceiling, value(best))
        picked.append((best, ceiling))
        remaining.remove(best)
    return [(h.id, score) for h, score in picked]


@pytest.mark.parametrize("seed", range(20))
def test_diversity_picks_as_the_definition_says(seed):
    rng = np.random.default_rng(seed)
    hits = [hit(float(s)) for s in sorted(rng.random(30), reverse=True)]
    embeddings = {h.id: unit(*rng.normal(size=8)) for h in hits}
    diversity = float(rng.choice([0.0, 0.3, 0.7, 1.0]))
    picked = diversify(hits, embeddings, diversity=diversity, k=10)
    expected = reference_mmr(hits, embeddings, diversity=diversity, k=10)
    assert [h.id for h in picked] == [i for i, _ in expected]
    assert [h.score for h in picked] == pytest.approx([s for _, s in expected], abs=1e-6)
