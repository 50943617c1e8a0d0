"""What a wake-up message says: the queue and actor names, and the keys of jobs.

The HTTP edge sends messages and the worker runs them by these names only, so neither
imports the other.
"""

from __future__ import annotations

from typing import Literal, NamedTuple
from uuid import UUID

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


# Which jobs a claim serves first (models/jobs/outbox.py): ``interactive`` (memories,
# messages, single documents, anything written with ``wait``), then ``bulk`` (batches of
# documents, imports, space fills).
Lane = Literal["interactive", "bulk"]
