"""Packing a context: the budget is kept, and a line is counted only while it may still fit.
No server."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from support.packing import found_turn, memory, message, said

from models.ingest.tokens import estimate_tokens
from models.search.context import PASSAGES_HEADER, pack
from models.search.turns import Window
from models.types import LeftOut


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
    filler = [memory("tokens " * 8) for _ in range(5)]  # each more than the whole room
    rest = [memory(f"later {n}") for n in range(50)]
    context = pack(filler + rest, [], max_tokens=30, count=counter)
    later_counted = [
        text for text in counter.counted if text.startswith("- [") and "] later " in text
    ]
    assert context.memories and len(later_counted) == len(context.memories)  # none in vain


def room(*lines: str, heading: str = PASSAGES_HEADER) -> int:
    """The tokens of a text of ``lines`` under ``heading``, as ``estimate_tokens`` counts."""
    return estimate_tokens("") + sum(
        estimate_tokens(line + "\n") - estimate_tokens("") for line in (heading + "\n", *lines)
    )


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
    # room for the hit's turn and one neighbour: the nearer one, the earlier
    lines = [f"Ann: {conversation[i].content}" for i in (4, 3)]
    tight = pack([first], [], max_tokens=room("[2026-06-01 00:05]", *lines),
                 count=estimate_tokens, turns=turns)  # fmt: skip
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
    lines = [f"{t.name}: {t.content}" for t in conversation[:2]]
    tight = pack([question, statement], [], max_tokens=room("[2026-06-01 00:01]", *lines),
                 count=estimate_tokens, turns=turns)  # fmt: skip
    assert [t.seq for t in tight.passages[0].turns] == [1, 2]
    assert tight.left_out.memories == 1  # the statement: no room after the reply
    roomy = pack([question, statement], [], max_tokens=400, count=estimate_tokens, turns=turns)
    assert [t.seq for t in roomy.passages[0].turns] == [1, 2, 3, 4]
    ask_last = pack([statement, question], [], max_tokens=400, count=estimate_tokens,
                    turns={statement.id: Window(conversation[3], conversation[2:3]),
                           question.id: Window(conversation[0], [])})  # fmt: skip
    assert [t.seq for t in ask_last.passages[0].turns] == [1, 3, 4]  # no next turn known


def test_the_recent_conversation_is_headed_by_the_time_of_its_last_turn():
    latest = [message(n, f"turn {n}") for n in range(3, 0, -1)]  # newest first
    latest[0] = msgspec.structs.replace(
        latest[0], occurred_at=datetime(2024, 2, 3, 9, 5, tzinfo=UTC)
    )
    context = pack([], latest, max_tokens=200, count=estimate_tokens)
    assert context.text.splitlines() == [
        "Recent conversation (last turn 2024-02-03 09:05):", "user: turn 1", "user: turn 2",
        "user: turn 3",
    ]  # fmt: skip
    assert context.tokens == estimate_tokens(context.text) <= 200
    heading = "Recent conversation (last turn 2024-02-03 09:05):"
    just = room("user: turn 3", heading=heading)  # the heading is paid with the first turn
    assert [m.seq for m in pack([], latest, max_tokens=just, count=estimate_tokens).messages] == [3]
    assert pack([], latest, max_tokens=just - 1, count=estimate_tokens).messages == []
