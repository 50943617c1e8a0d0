"""Which spaces a search that names none covers, and how their rankings become one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from models.embedding.spaces import MINILM_384, SpaceRegistry, external_space, openai_space
from models.errors import InvalidInput
from models.search.rerank import best_ranks
from models.search.spaces import across_spaces, covered, first_spaces
from models.settings import ExternalSpace, OpenAIOptions
from models.types import SearchHit

OPENAI = openai_space(OpenAIOptions(base_url="http://localhost:1/v1"))
SMALL = external_space(ExternalSpace(name="small-6", dims=6))
BOTH = ("memory", "chunk")


def registry(memory: str = MINILM_384.name, document: str = OPENAI.name) -> SpaceRegistry:
    return SpaceRegistry.with_defaults(
        (MINILM_384, OPENAI, SMALL), {"memory": memory, "document": document}
    )


def names(searched):
    return {space.name: kinds for space, kinds in searched.items()}


def test_a_named_space_is_searched_alone_and_an_unknown_one_is_bad_input():
    spaces = registry()
    assert names(first_spaces(spaces, SMALL.name, BOTH)) == {SMALL.name: BOTH}
    with pytest.raises(InvalidInput, match="unknown space"):
        first_spaces(spaces, "nope-3", BOTH)


def test_without_a_name_each_type_starts_in_its_default_space():
    assert names(first_spaces(registry(), None, BOTH)) == {
        MINILM_384.name: ("memory",),
        OPENAI.name: ("chunk",),
    }
    same = registry(document=MINILM_384.name)
    assert names(first_spaces(same, None, BOTH)) == {MINILM_384.name: BOTH}


def test_the_spaces_holding_the_users_items_are_added_where_the_query_can_go():
    spaces = registry(document=MINILM_384.name)
    first = first_spaces(spaces, None, BOTH)
    held = {(MINILM_384.name, "memory"), (OPENAI.name, "memory"), (SMALL.name, "memory")}
    text = covered(spaces, first, held, text=True, vector_dims=None)
    assert names(text.searched) == {MINILM_384.name: BOTH, OPENAI.name: ("memory",)}
    assert text.unreached == [SMALL.name]  # external: the server cannot embed the text
    with_vector = covered(spaces, first, held, text=True, vector_dims=6)
    assert names(with_vector.searched)[SMALL.name] == ("memory",) and not with_vector.unreached
    vector_only = covered(spaces, first, held, text=False, vector_dims=384)
    assert names(vector_only.searched) == {MINILM_384.name: BOTH}
    assert vector_only.unreached == [OPENAI.name, SMALL.name]


def test_only_the_types_asked_for_and_held_elsewhere_add_a_space():
    spaces = registry(document=MINILM_384.name)
    memories = first_spaces(spaces, None, ("memory",))
    held = {(OPENAI.name, "chunk"), (MINILM_384.name, "memory")}
    assert covered(spaces, memories, held, text=True, vector_dims=None) == (memories, [])
    chunks = first_spaces(spaces, None, ("chunk",))
    found = covered(spaces, chunks, held, text=True, vector_dims=None)
    assert names(found.searched) == {MINILM_384.name: ("chunk",), OPENAI.name: ("chunk",)}


def hit(similarity: float, id: uuid.UUID | None = None) -> SearchHit:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    return SearchHit(type="memory", id=id or uuid.uuid4(), score=similarity,
                     similarity=similarity, content="x", metadata={}, session_id=None,
                     importance=None, document_id=None, chunk_index=None, created_at=now,
                     occurred_at=now)  # fmt: skip


def test_an_item_in_two_spaces_counts_once_at_its_better_rank():
    shared = uuid.uuid4()
    a, b, c = hit(0.9), hit(0.8, shared), hit(0.7)
    other = [hit(0.6, shared), hit(0.5)]
    fused = best_ranks([[a, b, c], other], k=60)
    scores = {h.id: h.score for h in fused}
    assert scores[shared] == pytest.approx(1 / 61)  # first in the second ranking, not 1/61 + 1/62
    assert scores[a.id] == pytest.approx(1 / 61) and scores[c.id] == pytest.approx(1 / 63)
    assert len(fused) == 4 and next(h for h in fused if h.id == shared).similarity == 0.6
    assert [h.id for h in across_spaces([[a, b, c], other], k=2, fusion_k=60)] == [a.id, shared]


def test_disjoint_rankings_fuse_by_reciprocal_rank_and_ties_go_by_similarity():
    first, second = [hit(0.4), hit(0.3)], [hit(0.8), hit(0.2)]
    fused = best_ranks([first, second], k=60)
    assert [h.id for h in fused] == [second[0].id, first[0].id, first[1].id, second[1].id]
