"""Packing a context: the budget is kept, and a line is counted only while it may still fit.
No server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from models.ingest.tokens import estimate_tokens
from models.search.context import pack
from models.types import Message, SearchHit

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def memory(content: str, score: float = 0.5) -> SearchHit:
    return SearchHit(type="memory", id=uuid.uuid4(), score=score, similarity=score,
                     content=content, metadata={}, session_id=None, importance=None,
                     document_id=None, chunk_index=None, created_at=NOW,
                     occurred_at=NOW)  # fmt: skip


def message(seq: int, content: str) -> Message:
    return Message(id=uuid.uuid4(), session_id="s", seq=seq, role="user", name=None,
                   content=content, metadata={}, memory_id=uuid.uuid4(), occurred_at=NOW,
                   created_at=NOW)  # fmt: skip


class Counting:
    """``estimate_tokens``, remembering what it was asked to count."""

    def __init__(self) -> None:
        self.counted: list[str] = []

    def __call__(self, text: str) -> int:
        self.counted.append(text)
        return estimate_tokens(text)


def test_the_budget_is_kept_and_the_best_memories_come_first():
    hits = [memory(f"memory number {n} " + "word " * 10, 1 - n / 100) for n in range(30)]
    latest = [message(n, f"turn {n}") for n in range(10, 0, -1)]
    context = pack(hits, latest, max_tokens=200, count=estimate_tokens)
    assert context.tokens <= 200
    assert [m.id for m in context.memories] == [h.id for h in hits[: len(context.memories)]]
    assert [m.seq for m in context.messages] == sorted(m.seq for m in context.messages)


def test_a_memory_too_long_to_fit_is_passed_over_uncounted():
    counter = Counting()
    huge = memory("word " * 5000)  # 5,000 words: more than the budget's tokens
    small = memory("a short memory")
    context = pack([huge, small], [], max_tokens=100, count=counter)
    assert [m.id for m in context.memories] == [small.id]
    assert all(len(text) < 1000 for text in counter.counted), "the huge memory was counted"


def test_nothing_more_is_counted_once_the_budget_is_full():
    counter = Counting()
    filler = [memory("tokens " * 8) for _ in range(5)]  # each about the whole room
    rest = [memory(f"later {n}") for n in range(50)]
    context = pack(filler + rest, [], max_tokens=40, count=counter)
    later_counted = [text for text in counter.counted if text.startswith("- later")]
    assert context.memories and len(later_counted) == len(context.memories)  # none in vain
