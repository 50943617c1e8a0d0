"""LangChain ids (any string) as Engram memory ids (UUIDs), both ways.

A UUID in its canonical form is the memory's id as it is. Any other string is mapped to
``uuid5(NAMESPACE, string)``, always the same UUID for the same string, and the string is
kept in the memory's metadata under ``ID_KEY``, so that searches and ``get_by_ids`` answer
the caller's own id. ``ID_KEY`` never shows in a ``Document``'s metadata.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

NAMESPACE = uuid.UUID("6f1c1f9e-3a57-5d8e-9c1b-2f0c5e1a7b42")
ID_KEY = "langchain_id"


def memory_id(langchain_id: str) -> uuid.UUID:
    """The memory id that stands for a LangChain id."""
    try:
        parsed = uuid.UUID(langchain_id)
    except ValueError:
        return uuid.uuid5(NAMESPACE, langchain_id)
    return parsed if str(parsed) == langchain_id else uuid.uuid5(NAMESPACE, langchain_id)


def stored_metadata(langchain_id: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata to store: the caller's, with the LangChain id when it is not a UUID."""
    stored = dict(metadata or {})
    stored.pop(ID_KEY, None)
    if str(memory_id(langchain_id)) != langchain_id:
        stored[ID_KEY] = langchain_id
    return stored


def split_metadata(item_id: uuid.UUID, metadata: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the LangChain id, the caller's metadata) of a stored memory."""
    caller = dict(metadata)
    kept = caller.pop(ID_KEY, None)
    return (kept if isinstance(kept, str) else str(item_id)), caller
