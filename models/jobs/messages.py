"""What a wake-up message says: the queue and actor names, and the keys of jobs.

The HTTP edge sends messages and the worker runs them by these names only, so neither
imports the other.
"""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

from models.types import Lane as Lane

EMBED_QUEUE = "embeddings"
EMBED_ACTOR = "embed_items"
FILL_ACTOR = "fill_space"
MESSAGE_SIZE = 256  # ids a wake-up message carries, at most


class Key(NamedTuple):
    """An item of a user."""

    user_id: str
    item_id: UUID


class Job(NamedTuple):
    """An item's embedding job in one space (a row of ``embed_state``)."""

    space: str
    user_id: str
    item_id: UUID
