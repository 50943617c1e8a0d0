"""Context for the next prompt: what the user's memory holds on a question, and the latest
turns of the session, packed within a token budget.

The packing order (docs/api.md, "Context for the next prompt"):

1. the session's latest messages, newest back, until half the budget is used;
2. then what the search found, best first, while it is relevant enough (its score at least
   ``floor`` times the best one's) and fits: memories, and messages in passages of their
   sessions, a message that asks a question with the turn that answers it (the next);
3. then the turns around each message packed, nearest first, in the order of relevance;
4. then, if room is left, older messages of the session.

Each turn is packed once.

The text has up to three parts: ``Relevant memories:``, each line led by the day it
happened; ``From past conversations:``, a passage a session, its turns in the order they
were said under the time of the first; ``Recent conversation (last turn <time>):``, the
session's latest turns, under the time of the last. ``left_out`` counts what was relevant
but did not fit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from models.db.scope import Reader
from models.embedding.spaces import Space
from models.ingest.tokens import TokenCounter
from models.search.hints import SizeHints
from models.search.planner import search
from models.search.query import SearchQuery
from models.search.turns import Window, asks_a_question, windows
from models.store.sessions import Message
from models.types import Context as Context
from models.types import ContextMemory as ContextMemory
from models.types import LeftOut as LeftOut
from models.types import Passage as Passage
from models.types import SearchHit, Turn

LATEST_MESSAGES = 200  # the most messages of a session considered
MEMORIES_HEADER = "Relevant memories:"
PASSAGES_HEADER = "From past conversations:"
MESSAGES_HEADER = "Recent conversation"


class _Budget:
    """Tokens left for the lines of a text of at most ``tokens``. A line costs what it adds
    to the text, its newline included: its count less what any text costs (a tokenizer's
    special tokens, paid once for the whole text). A part's heading, with the blank line
    after it, is paid with the part's first line. A line is counted only while it may still
    fit: every word costs at least a token, so a line of more words than the room left is
    passed over uncounted."""

    def __init__(self, tokens: int, count: TokenCounter) -> None:
        self.count, self.used = count, 0
        self.base = count("")
        self.tokens = tokens - self.base
        self.headed: set[str] = set()

    def take(self, heading: str, *lines: str) -> bool:
        """Spend what ``lines`` cost, under ``heading``, if they all fit."""
        paid = [*lines] if heading in self.headed else [heading + "\n", *lines]
        words = sum(len(line.split()) for line in paid)
        if self.used + words > self.tokens:
            return False
        cost = sum(self.count(line + "\n") - self.base for line in paid)
        if self.used + cost > self.tokens:
            return False
        self.used += cost
        self.headed.add(heading)
        return True


def pack(
    hits: Sequence[SearchHit],
    latest: Sequence[Message],
    *,
    max_tokens: int,
    count: TokenCounter,
    turns: dict[UUID, Window] | None = None,
    floor: float = 0.0,
) -> Context:
    """``hits`` best first; ``latest`` newest first; ``turns`` the windows of the hits that
    are messages (``models.search.turns.windows``)."""
    turns = turns or {}
    budget = _Budget(max_tokens, count)
    recent = _recent_heading(latest)
    remaining = list(latest)
    messages: list[Message] = []
    while (
        remaining and budget.used < budget.tokens // 2 and budget.take(recent, _line(remaining[0]))
    ):
        messages.append(remaining.pop(0))
    seen_messages = {m.id for m in messages}
    seen_memories = {m.memory_id for m in messages}
    memories: list[SearchHit] = []
    passages: dict[str, dict[int, Turn]] = {}  # by session, by seq
    best = max((hit.score for hit in hits), default=0.0)
    relevant = [hit for hit in hits if hit.score >= floor * best]
    did_not_fit = 0
    for hit in relevant:  # what was found, alone, best first
        if hit.id in seen_memories:
            continue
        window = turns.get(hit.id) if hit.session_id is not None else None
        if window is None:
            packed = budget.take(MEMORIES_HEADER, _memory_line(hit))
        else:
            packed = _pack_turn(hit.session_id or "", window.turn, passages, seen_messages, budget)
            reply = _reply(window) if packed else None
            if reply is not None:
                _pack_turn(hit.session_id or "", reply, passages, seen_messages, budget)
        if packed:
            memories.append(hit)
            seen_memories.add(hit.id)
        else:
            did_not_fit += 1
    for hit in memories:  # then the turns around it, nearest first, while they fit
        if hit.id in turns:
            window = turns[hit.id]
            for turn in sorted(window.around, key=lambda t: (abs(t.seq - window.turn.seq), t.seq)):
                _pack_turn(hit.session_id or "", turn, passages, seen_messages, budget)
    while remaining and budget.take(recent, _line(remaining[0])):
        messages.append(remaining.pop(0))
    messages.reverse()  # as they were said
    packed_passages = [
        Passage(session_id=session_id, turns=[said[seq] for seq in sorted(said)])
        for session_id, said in sorted(passages.items(), key=lambda p: _first_time(p[1]))
    ]
    text = _text([h for h in memories if h.id not in turns], packed_passages, messages, recent)
    return Context(
        text=text,
        tokens=count(text) if text else 0,
        max_tokens=max_tokens,
        memories=[
            ContextMemory(
                id=h.id,
                content=h.content,
                score=h.score,
                metadata=h.metadata,
                occurred_at=h.occurred_at,
                session_id=h.session_id,
                message_id=turns[h.id].turn.message_id if h.id in turns else None,
            )
            for h in memories
        ],
        passages=packed_passages,
        messages=messages,
        left_out=LeftOut(
            memories=did_not_fit, below_floor=len(hits) - len(relevant), messages=len(remaining)
        ),
    )


def _pack_turn(
    session_id: str,
    turn: Turn,
    passages: dict[str, dict[int, Turn]],
    seen: set[UUID],
    budget: _Budget,
) -> bool:
    """Pack ``turn`` into its session's passage if it fits (the passage's first turn also
    pays for its heading); True if it is packed, now or before."""
    if turn.message_id in seen:
        return True
    passage = passages.get(session_id)
    lines = [_turn_line(turn)] if passage else [_heading(turn.occurred_at), _turn_line(turn)]
    if not budget.take(PASSAGES_HEADER, *lines):
        return False
    passages.setdefault(session_id, {})[turn.seq] = turn
    seen.add(turn.message_id)
    return True


def _reply(window: Window) -> Turn | None:
    """The turn said just after the window's own, if its own asks a question (and the
    window holds the next)."""
    if not asks_a_question(window.turn.content):
        return None
    return next((t for t in window.around if t.seq == window.turn.seq + 1), None)


def _text(
    memories: list[SearchHit], passages: list[Passage], messages: list[Message], recent: str
) -> str:
    sections = []
    if memories:
        sections.append("\n".join([MEMORIES_HEADER, *(_memory_line(h) for h in memories)]))
    if passages:
        blocks = [
            "\n".join([_heading(p.turns[0].occurred_at), *(_turn_line(t) for t in p.turns)])
            for p in passages
        ]
        sections.append("\n".join([PASSAGES_HEADER, *blocks]))
    if messages:
        sections.append("\n".join([recent, *(_line(m) for m in messages)]))
    return "\n\n".join(sections)


def _first_time(said: dict[int, Turn]) -> tuple[datetime, int]:
    first = said[min(said)]
    return first.occurred_at, first.seq


def _memory_line(hit: SearchHit) -> str:
    return f"- [{hit.occurred_at:%Y-%m-%d}] {hit.content}"


def _recent_heading(latest: Sequence[Message]) -> str:
    """The recent part's heading, with the time of the session's last turn (``latest`` is
    newest first): the conversation's present, which its other times are read against."""
    if not latest:
        return MESSAGES_HEADER + ":"
    return f"{MESSAGES_HEADER} (last turn {latest[0].occurred_at:%Y-%m-%d %H:%M}):"


def _heading(when: datetime) -> str:
    return f"[{when:%Y-%m-%d %H:%M}]"


def _turn_line(turn: Turn) -> str:
    return f"{turn.name or turn.role}: {turn.content}"


def _line(message: Message) -> str:
    return f"{message.name or message.role}: {message.content}"


async def build_context(
    read: Reader,
    space: Space,
    user_id: str,
    query: SearchQuery,
    *,
    latest: Sequence[Message],
    max_tokens: int,
    count: TokenCounter,
    exact_max_rows: int,
    ef_search: int,
    hints: SizeHints | None,
    neighbors: int,
    floor: float,
) -> Context:
    """Search the user's memories, read the turns around the hits that are messages, then
    pack them with the session's ``latest`` messages (newest first). Each read is a batch of
    its own, in one round trip, as a search's are."""
    hits = await search(
        read, space, user_id, query, exact_max_rows=exact_max_rows, ef_search=ef_search,
        hints=hints,
    )  # fmt: skip
    found = await windows(read, user_id, hits, neighbors=neighbors)
    # counting tokens is CPU work: off the event loop
    return await asyncio.to_thread(
        pack, hits, latest, max_tokens=max_tokens, count=count, turns=found, floor=floor
    )
