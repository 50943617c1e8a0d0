"""The messages behind a search's hits: the turns around each hit that is a message.

A hit that is the memory of a message carries the message's id and ``seq`` from the search
statement that found it (``models.search.sources.PLACED``); asked for ``n`` neighbours, it
carries the ``n`` turns before and the ``n`` after it in its session, in order (fewer at
either end of the session), read here. Each hit is looked at alone: two hits from nearby
turns each list the other among their neighbours. One statement for every hit, scoped to
the user. A memory remembered for two messages (written before each message had a memory
of its own) is the first of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import msgspec

from models.db.batch import Statement, named
from models.db.scope import Reader
from models.types import Role, SearchHit, Turn

MAX_NEIGHBORS = 10
# a turn that holds one of these asks a question (Latin, full-width and Arabic marks)
QUESTION_MARKS = ("?", "\uff1f", "\u061f")
# the fields of a hit that no search statement gives: they are filled in here
FILLED_IN = ("neighbors",)

# the turns around the messages the search statements named (``message_id``), found by
# their memories
_TURNS = """
    WITH hit AS (
        SELECT memory_id, session_id, seq
        FROM messages
        WHERE user_id = %(user_id)s AND memory_id = ANY(%(ids)s) AND id = ANY(%(messages)s))
    SELECT h.memory_id, h.seq AS hit_seq, t.id AS message_id, t.seq, t.role, t.name,
           t.content, t.occurred_at
    FROM hit h
    JOIN messages t ON t.user_id = %(user_id)s AND t.session_id = h.session_id
                   AND t.seq BETWEEN h.seq - %(n)s AND h.seq + %(n)s
    ORDER BY h.memory_id, t.seq
"""


class _TurnRow(NamedTuple):
    memory_id: UUID
    hit_seq: int
    message_id: UUID
    seq: int
    role: Role
    name: str | None
    content: str
    occurred_at: datetime


class Window(NamedTuple):
    """A hit's message, and the turns before and after it in its session, in order."""

    turn: Turn
    around: list[Turn]


async def windows(
    read: Reader, user_id: str, hits: Sequence[SearchHit], *, neighbors: int
) -> dict[UUID, Window]:
    """For each hit that is a message's memory (by the hit's id): its message and the
    ``neighbors`` turns on either side."""
    said = [h for h in hits if h.message_id is not None]
    if not said:
        return {}
    params = {
        "user_id": user_id,
        "ids": [h.id for h in said],
        "messages": [h.message_id for h in said],
        "n": neighbors,
    }
    (rows,) = await read([Statement(_TURNS, params, rows=named(_TurnRow))], {})
    own: dict[UUID, Turn] = {}
    around: dict[UUID, list[Turn]] = {}
    for row in rows:
        if row.seq == row.hit_seq:
            own[row.memory_id] = _turn(row)
        else:
            around.setdefault(row.memory_id, []).append(_turn(row))
    return {memory_id: Window(turn, around.get(memory_id, [])) for memory_id, turn in own.items()}


async def with_turns(
    read: Reader, user_id: str, hits: list[SearchHit], *, neighbors: int
) -> list[SearchHit]:
    """``hits`` with the turns around each one that is a message, when ``neighbors`` is
    above 0; nothing is read otherwise."""
    if not neighbors:
        return hits
    found = await windows(read, user_id, hits, neighbors=neighbors)
    if not found:  # no hit is a message's memory: nothing to fill in
        return hits
    return [_with_neighbors(hit, found.get(hit.id)) for hit in hits]


def _with_neighbors(hit: SearchHit, window: Window | None) -> SearchHit:
    return hit if window is None else msgspec.structs.replace(hit, neighbors=window.around)


def _turn(row: _TurnRow) -> Turn:
    return Turn(
        message_id=row.message_id,
        seq=row.seq,
        role=row.role,
        name=row.name,
        content=row.content,
        occurred_at=row.occurred_at,
    )


def asks_a_question(text: str) -> bool:
    """Whether a turn asks something: the turn said next is then most likely its answer."""
    return any(mark in text for mark in QUESTION_MARKS)
