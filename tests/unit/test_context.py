"""Packing a context: the budget is kept, and a line is counted only while it may still fit.
No server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from models.ingest.tokens import estimate_tokens
from models.search.context import MEMORIES_HEADER, MESSAGES_HEADER, PASSAGES_HEADER, pack
from models.search.turns import Window
from models.types import LeftOut, Message, SearchHit, Turn

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
    later_counted = [
        text for text in counter.counted if text.startswith("- [") and "] later " in text
    ]
    assert context.memories and len(later_counted) == len(context.memories)  # none in vain


def said(seq: int, content: str, name: str = "Ann") -> Turn:
    return Turn(message_id=uuid.uuid4(), seq=seq, role="user", name=name, content=content,
                occurred_at=NOW + timedelta(minutes=seq))  # fmt: skip


def found_turn(turn: Turn, around: list[Turn], score: float = 0.5) -> tuple[SearchHit, Window]:
    hit = msgspec.structs.replace(memory(f"{turn.name}: {turn.content}", score), session_id="s")
    return hit, Window(turn, around)


def test_a_message_found_comes_with_its_neighbours_in_a_passage():
    conversation = [said(n, f"line {n}", ("Ann", "Bo")[n % 2]) for n in range(1, 8)]
    hit, window = found_turn(conversation[3], conversation[1:3] + conversation[4:6])
    alone = memory("Ann likes tea.", 0.4)
    context = pack([hit, alone], [], max_tokens=200, count=estimate_tokens,
                   turns={hit.id: window})  # fmt: skip
    (passage,) = context.passages
    assert [t.seq for t in passage.turns] == [2, 3, 4, 5, 6]
    assert context.text == (
        "Relevant memories:\n- [2026-06-01] Ann likes tea.\n\n"
        "From past conversations:\n[2026-06-01 00:02]\n"
        "Ann: line 2\nBo: line 3\nAnn: line 4\nBo: line 5\nAnn: line 6"
    )
    assert [m.message_id for m in context.memories] == [conversation[3].message_id, None]


def test_neighbours_nearest_first_while_they_fit_and_each_turn_once():
    conversation = [said(n, f"turn number {n} " + "word " * 6) for n in range(1, 10)]
    first, first_window = found_turn(conversation[4], conversation[2:4] + conversation[5:7])
    second, second_window = found_turn(conversation[5], conversation[3:5] + conversation[6:8])
    turns = {first.id: first_window, second.id: second_window}
    roomy = pack([first, second], [], max_tokens=400, count=estimate_tokens, turns=turns)
    assert [t.seq for t in roomy.passages[0].turns] == [3, 4, 5, 6, 7, 8]  # none twice
    # room for the headings, the hit's turn and one neighbour: the nearer one, the earlier
    headings = [MEMORIES_HEADER, PASSAGES_HEADER, MESSAGES_HEADER, "[2026-06-01 00:05]"]
    lines = [f"Ann: {conversation[i].content}" for i in (4, 3)]
    room = sum(estimate_tokens(text) for text in headings + lines)
    tight = pack([first], [], max_tokens=room, count=estimate_tokens, turns=turns)
    assert [t.seq for t in tight.passages[0].turns] == [4, 5]


def test_weak_hits_stay_out_and_what_was_left_out_is_counted():
    strong = [memory(f"strong {n}", 0.9) for n in range(3)]
    weak = [memory(f"weak {n}", 0.1) for n in range(4)]
    context = pack(strong + weak, [message(1, "hi")], max_tokens=200, count=estimate_tokens,
                   floor=0.25)  # fmt: skip
    assert [m.content for m in context.memories] == ["strong 0", "strong 1", "strong 2"]
    assert context.left_out == LeftOut(memories=0, below_floor=4, messages=0)
    crowded = pack([memory("word " * 30, 0.9) for _ in range(5)], [], max_tokens=100,
                   count=estimate_tokens)  # fmt: skip
    assert crowded.left_out.memories == 5 - len(crowded.memories) > 0


def test_a_question_found_comes_with_its_reply_before_the_next_hit():
    """Found alone, a question is packed with the turn said after it (most likely its
    answer), ahead of the hits after it; its other neighbours wait for room."""
    conversation = [said(1, "What did you bake?"), said(2, "A plum cake.", "Bo"),
                    said(3, "Nice."), said(4, "The oven is new.", "Bo")]  # fmt: skip
    question, window = found_turn(conversation[0], conversation[1:2])
    statement, other = found_turn(conversation[3], conversation[2:3], score=0.4)
    turns = {question.id: window, statement.id: other}
    headings = [MEMORIES_HEADER, PASSAGES_HEADER, MESSAGES_HEADER, "[2026-06-01 00:01]"]
    lines = [f"{t.name}: {t.content}" for t in conversation[:2]]
    room = sum(estimate_tokens(text) for text in headings + lines)
    tight = pack([question, statement], [], max_tokens=room, count=estimate_tokens, turns=turns)
    assert [t.seq for t in tight.passages[0].turns] == [1, 2]
    assert tight.left_out.memories == 1  # the statement: no room after the reply
    roomy = pack([question, statement], [], max_tokens=400, count=estimate_tokens, turns=turns)
    assert [t.seq for t in roomy.passages[0].turns] == [1, 2, 3, 4]
    ask_last = pack([statement, question], [], max_tokens=400, count=estimate_tokens,
                    turns={statement.id: Window(conversation[3], conversation[2:3]),
                           question.id: Window(conversation[0], [])})  # fmt: skip
    assert [t.seq for t in ask_last.passages[0].turns] == [1, 3, 4]  # no next turn known
