"""Hits, turns and messages for packing a context (``models.search.context.pack``),
without a server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from models.search.turns import Window
from models.types import Message, SearchHit, Turn

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


def said(seq: int, content: str, name: str = "Ann") -> Turn:
    return Turn(message_id=uuid.uuid4(), seq=seq, role="user", name=name, content=content,
                occurred_at=NOW + timedelta(minutes=seq))  # fmt: skip


def found_turn(turn: Turn, around: list[Turn], score: float = 0.5) -> tuple[SearchHit, Window]:
    hit = msgspec.structs.replace(memory(f"{turn.name}: {turn.content}", score), session_id="s")
    return hit, Window(turn, around)
