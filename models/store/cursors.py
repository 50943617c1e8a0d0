"""Opaque page cursors: the sort key of the last row seen, base64url-encoded."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from models.errors import InvalidInput


class Dated(Protocol):
    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> UUID: ...


D = TypeVar("D", bound=Dated)


def encode_cursor(*parts: str) -> str:
    raw = "|".join(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, parts: int) -> list[str]:
    """The parts of a cursor made by ``encode_cursor``; anything else is InvalidInput."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("invalid cursor") from None
    found = raw.rsplit("|", parts - 1)
    if len(found) != parts:
        raise InvalidInput("invalid cursor")
    return found


def decode_newest_first(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The (created_at, id) after which a newest-first page continues."""
    if not cursor:
        return None
    at, item_id = decode_cursor(cursor, parts=2)
    try:
        return datetime.fromisoformat(at), UUID(item_id)
    except ValueError:
        raise InvalidInput("invalid cursor") from None


def newest_first_page(rows: list[D], limit: int) -> tuple[list[D], str | None]:
    """A page from ``limit + 1`` rows, and the cursor of the next page (None at the end)."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at.isoformat(), str(last.id))
