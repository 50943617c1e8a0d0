"""Re-ranking as pure functions: fusion by scores and by ranks, the recency and importance
blend, and maximal marginal relevance. No server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.search.query import Fusion, Weights
from models.search.rerank import (
    blend,
    by_score,
    by_similarity,
    diversify,
    fuse,
    fuse_hybrid,
    fuse_scores,
    lift_nearby_turns,
)
from models.search.turns import with_turns
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


def text_hit(bm25: float, similarity: float, **extra) -> SearchHit:
    """A hit of the text side: its ``score`` is BM25."""
    return msgspec.structs.replace(hit(similarity, **extra), score=bm25)


def test_score_fusion_averages_the_rescaled_similarity_and_bm25():
    near, middle, far = hit(0.9), hit(0.7), hit(0.5)
    worded = text_hit(8.0, 0.6)  # found by its words alone
    also_worded = msgspec.structs.replace(middle, score=2.0)  # found by both sides
    fused = fuse_scores([near, middle, far], [worded, also_worded], vector_weight=1,
                        text_weight=1)  # fmt: skip
    scores = {h.id: h.score for h in fused}
    # similarity 0.5..0.9 onto 0..1; BM25 as a share of the best (8); not found by words: 0
    assert scores[near.id] == pytest.approx((1.0 + 0) / 2)
    assert scores[middle.id] == pytest.approx((0.5 + 2 / 8) / 2)
    assert scores[far.id] == pytest.approx((0.0 + 0) / 2)
    assert scores[worded.id] == pytest.approx((0.25 + 1.0) / 2)
    assert [h.id for h in fused] == [worded.id, near.id, middle.id, far.id]
    assert fused[2].similarity == 0.7  # similarity stays the cosine


def test_score_fusion_keeps_a_clear_lead_that_ranks_would_even_out():
    # the words' best is far ahead of the rest, five meanings are nearly equal: by ranks the
    # item second on both sides wins; by scores, the clear winner on words does
    leader, second = text_hit(10.0, 0.846), text_hit(1.0, 0.849)
    vector = [hit(0.85), second, hit(0.848), hit(0.847), leader, hit(0.70)]
    text = [leader, second]
    assert fuse([(vector, 1.0), (text, 1.0)], k=RRF_K)[0].id == second.id
    assert fuse_scores(vector, text, vector_weight=1, text_weight=1)[0].id == leader.id


def test_score_fusion_weights_choose_between_the_sides():
    a, b = hit(0.9), hit(0.5)
    worded_b = msgspec.structs.replace(b, score=5.0)
    meaning_only = fuse_scores([a, b], [worded_b], vector_weight=1, text_weight=0)
    assert [h.id for h in meaning_only] == [a.id, b.id]
    words_only = fuse_scores([a, b], [worded_b], vector_weight=0, text_weight=1)
    assert [h.id for h in words_only] == [b.id, a.id]
    leaning = {h.id: h.score for h in fuse_scores([a, b], [worded_b], vector_weight=3,
                                                   text_weight=1)}  # fmt: skip
    assert leaning[a.id] == pytest.approx(3 / 4) and leaning[b.id] == pytest.approx(1 / 4)


def test_score_fusion_of_one_side_or_equal_scores():
    alone = hit(0.4)
    assert [(h.id, h.score) for h in fuse_scores([alone], [], vector_weight=1,
                                                  text_weight=1)] == [(alone.id, 0.5)]  # fmt: skip
    assert fuse_scores([], [], vector_weight=1, text_weight=1) == []
    twins = [hit(0.5, id=uuid.UUID(int=2)), hit(0.5, id=uuid.UUID(int=1))]
    fused = fuse_scores(twins, [], vector_weight=1, text_weight=1)
    assert [h.id.int for h in fused] == [1, 2]  # equal scores: the same order every time
    assert {h.score for h in fused} == {0.5}


def test_hybrid_fusion_follows_its_method():
    vector = [hit(0.9), hit(0.8)]
    text = [text_hit(3.0, 0.8, id=vector[1].id)]
    by_scores = fuse_hybrid(vector, text, Fusion())
    assert by_scores == fuse_scores(vector, text, vector_weight=1, text_weight=1)
    by_ranks = fuse_hybrid(vector, text, Fusion(method="ranks", text=2, k=3))
    assert by_ranks == fuse([(vector, 1.0), (text, 2.0)], k=3)


def turn(score: float, session: str, seq: int, **extra) -> SearchHit:
    """A hit that is the message ``seq`` of ``session``."""
    return hit(score, session_id=session, seq=seq, message_id=uuid.uuid4(), **extra)


def test_a_turn_near_a_strong_hit_is_lifted_by_a_share_of_its_score():
    statement = turn(0.9, "s", 4)  # matches the query
    reply = turn(0.5, "s", 5)  # said right after it
    further = turn(0.55, "s", 7)  # three turns on: within reach
    beyond = turn(0.3, "s", 8)  # four turns on: out of reach of the statement
    elsewhere = turn(0.6, "t", 6)  # near seq 5, but in another session
    note = hit(0.52)  # not a message
    hits = [statement, elsewhere, further, note, reply, beyond]
    scores = {h.id: h.score for h in lift_nearby_turns(hits, 0.2, 3)}
    assert scores[reply.id] == pytest.approx(0.5 + 0.2 * 0.9)
    assert scores[further.id] == pytest.approx(0.55 + 0.2 * 0.9)
    assert scores[statement.id] == pytest.approx(0.9 + 0.2 * 0.55)
    assert scores[beyond.id] == pytest.approx(0.3 + 0.2 * 0.55)  # the best within its reach
    assert scores[elsewhere.id] == 0.6 and scores[note.id] == 0.52
    lifted = lift_nearby_turns(hits, 0.2, 1)  # the turns just before and after only
    assert {h.id: h.score for h in lifted}[further.id] == pytest.approx(0.55 + 0.2 * 0.3)
    assert {h.similarity for h in lifted} == {0.9, 0.5, 0.55, 0.3, 0.6, 0.52}  # cosine, kept


# Latin, full-width and Arabic question marks, at the end or inside
ASKED = ["Have you been?", "Ça va ? Dis-moi.", "元気ですか\uff1f", "كيف حالك\u061f"]


@pytest.mark.parametrize("asked", ASKED)
def test_the_reply_to_a_question_is_lifted_twice_as_much(asked):
    question = turn(0.8, "s", 1, content=asked)
    reply, later = turn(0.2, "s", 2), turn(0.2, "s", 3)
    scores = {h.id: h.score for h in lift_nearby_turns([question, reply, later], 0.2, 3)}
    assert scores[reply.id] == pytest.approx(0.2 + 2 * 0.2 * 0.8)
    assert scores[later.id] == pytest.approx(0.2 + 0.2 * 0.8)  # not the question's reply
    assert scores[question.id] == pytest.approx(0.8 + 0.2 * 0.2)  # a reply lifts as any turn
    statement = turn(0.8, "s", 1, content="I have been.")
    plain = {h.id: h.score for h in lift_nearby_turns([statement, reply, later], 0.2, 3)}
    assert plain[reply.id] == pytest.approx(0.2 + 0.2 * 0.8)


def test_a_turn_takes_the_best_turn_near_it_and_the_lift_does_not_chain():
    before, middle, after = turn(0.8, "s", 1), turn(0.1, "s", 2), turn(0.3, "s", 3)
    lifted = {h.id: h.score for h in lift_nearby_turns([before, middle, after], 0.5, 1)}
    assert lifted[middle.id] == pytest.approx(0.1 + 0.5 * 0.8)
    assert lifted[after.id] == pytest.approx(0.3 + 0.5 * 0.1)  # the neighbour's own score


def test_without_turns_near_each_other_nothing_moves():
    hits = [turn(0.9, "s", 1), turn(0.5, "s", 5), hit(0.4)]  # seq 1 and 5: 4 turns apart
    assert lift_nearby_turns(hits, 0.2, 3) == hits
    assert lift_nearby_turns(hits[:1], 0.2, 3) == hits[:1]


def test_hits_are_not_looked_up_again_unless_their_neighbours_are_asked_for():
    """A hit names its message already (the search's statements give its id and seq): with
    no neighbours asked, nothing more is read."""

    async def read(statements, settings):
        raise AssertionError("nothing to read")

    hits = [turn(0.9, "walk", 3), turn(0.5, "walk", 4)]
    assert asyncio.run(with_turns(read, "ann", hits, neighbors=0)) is hits


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


def _lifted_by_definition(hits: list[SearchHit], weight: float, reach: int) -> dict:
    """The lift as docs/api.md states it, turn by turn, for comparison."""
    said = {(h.session_id, h.seq): h for h in hits if h.seq is not None}
    scores = {}
    for h in hits:
        lift = 0.0
        if h.seq is not None:
            near = [said.get((h.session_id, h.seq + d)) for d in range(-reach, reach + 1) if d]
            lift = weight * max((n.score for n in near if n is not None), default=0.0)
            asked = said.get((h.session_id, h.seq - 1))
            if asked is not None and "?" in asked.content:
                lift = max(lift, 2 * weight * asked.score)
        scores[h.id] = h.score + lift
    return scores


# (session or None for an item that is not a message, seq, score, content)
SAID = st.tuples(
    st.sampled_from(["a", "b", None]),
    st.integers(0, 12),
    st.floats(0, 1),
    st.sampled_from(["So?", "Fine."]),
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    turns=st.lists(SAID, max_size=25, unique_by=lambda t: (t[0], t[1])),
    weight=st.sampled_from([0.0, 0.2, 0.5]),
    reach=st.integers(1, 5),
)
def test_the_lift_is_its_definition(turns, weight, reach):
    hits = [turn(score, session, seq, content=content) if session else hit(score)
            for session, seq, score, content in turns]  # fmt: skip
    hits.sort(key=lambda h: (-h.score, -h.similarity, h.id))  # as fused: best first
    lifted = lift_nearby_turns(hits, weight, reach)
    expected = _lifted_by_definition(hits, weight, reach)
    assert sorted(h.id for h in lifted) == sorted(h.id for h in hits)
    assert {h.id: h.score for h in lifted} == pytest.approx(expected)
    keys = [(-h.score, -h.similarity, h.id) for h in lifted]
    assert keys == sorted(keys)
