"""Opaque page cursors: the sort key of the last row seen, base64url-encoded."""

from __future__ import annotations

import base64

from models.errors import InvalidInput


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
