"""What a wake-up message says: the queue and actor names, and the keys of jobs.

The HTTP edge sends messages and the worker runs them by these names only, so neither
imports the other.
"""

from __future__ import annotations

from uuid import UUID

EMBED_QUEUE = "embeddings"
EMBED_ACTOR = "embed_items"
FILL_ACTOR = "fill_space"
MESSAGE_SIZE = 256  # ids a wake-up message carries, at most

Key = tuple[str, UUID]  # (user_id, item id)
Job = tuple[str, str, UUID]  # (space, user_id, item id)
