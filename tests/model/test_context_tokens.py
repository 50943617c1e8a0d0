"""A context's budget with the counters it runs with: all-MiniLM-L6-v2's own tokenizer (loaded
once for the module) and the estimate of external spaces. Whatever the texts, a context is
never over ``max_tokens``; with the model's tokenizer, whose count of a text is its lines'
word pieces plus [CLS] and [SEP] once, it is filled to within the line that did not fit.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.packing import found_turn, memory, message, said

from models.embedding.local import LocalEmbedder
from models.embedding.spaces import MINILM_384
from models.ingest.tokens import TokenCounter, estimate_tokens, hf_token_counter
from models.search.context import _memory_line, pack

WORDS = ("plum", "cake", "Porto", "sister", "garden", "bees", "Friday", "?", "ñandú", "東京")


@pytest.fixture(scope="module")
def tokenizer_count() -> TokenCounter:
    model = LocalEmbedder(MINILM_384)
    model.load()
    return hf_token_counter(model.tokenizer)


@pytest.fixture(scope="module", params=["model", "estimate"])
def count(request: pytest.FixtureRequest) -> TokenCounter:
    if request.param == "estimate":
        return estimate_tokens
    counter: TokenCounter = request.getfixturevalue("tokenizer_count")
    return counter


texts = st.text(max_size=120) | st.lists(st.sampled_from(WORDS), max_size=30).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(
    found=st.lists(texts, max_size=25),
    said_before=st.lists(texts, min_size=1, max_size=12),
    latest=st.lists(texts, max_size=8),
    max_tokens=st.integers(32, 400),
)
def test_a_context_is_never_over_its_budget(count, found, said_before, latest, max_tokens):
    """Memories, turns found with their neighbours and the session's latest messages, of any
    text: the packed text's count is ``tokens``, at most ``max_tokens``."""
    conversation = [said(n, text) for n, text in enumerate(said_before, start=1)]
    hits, turns = [memory(text, 0.9 - n / 100) for n, text in enumerate(found)], {}
    for n, turn in enumerate(conversation[::3]):
        hit, window = found_turn(turn, [t for t in conversation if t is not turn], 0.8 - n / 50)
        hits.append(hit)
        turns[hit.id] = window
    recent = [message(100 - n, text) for n, text in enumerate(latest)]
    context = pack(hits, recent, max_tokens=max_tokens, count=count, turns=turns)
    assert context.tokens == (count(context.text) if context.text else 0) <= max_tokens


@settings(max_examples=50, deadline=None)
@given(
    found=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=25), min_size=1),
    max_tokens=st.integers(32, 600),
)
def test_the_budget_is_filled_to_within_the_line_that_did_not_fit(
    tokenizer_count, found, max_tokens
):
    """The special tokens and a heading are paid once, not by every line: what is left of
    the budget is less than the first memory left out would have cost."""
    hits = [memory(" ".join(words), 0.9 - n / 1000) for n, words in enumerate(found)]
    context = pack(hits, [], max_tokens=max_tokens, count=tokenizer_count)
    packed = {m.id for m in context.memories}
    left_out = [hit for hit in hits if hit.id not in packed]
    if left_out and context.text:
        cost = tokenizer_count(_memory_line(left_out[0])) - tokenizer_count("")
        assert max_tokens - context.tokens < cost
