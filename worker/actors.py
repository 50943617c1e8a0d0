"""Actors: thin and idempotent, they take ids and find everything else in Postgres."""

from __future__ import annotations

import logging
from uuid import UUID

from models.jobs.messages import Key
from worker.embed import embed_batch
from worker.fill import fill_some
from worker.resources import current

log = logging.getLogger("engram.worker")


async def embed_items(space_name: str, keys: list[list[str]]) -> None:
    """Embed the pending items among ``keys`` ([user_id, id] pairs) into ``space_name``."""
    resources = current()
    if space_name not in resources.spaces.names():
        # a worker configured with that space (its sweep) will take these jobs
        log.warning("message for space %s skipped: not configured here", space_name)
        return
    space = resources.spaces.get(space_name)
    wanted = [Key(user_id, UUID(item_id)) for user_id, item_id in keys]
    step = resources.settings.encoder.batch_size * 4
    for start in range(0, len(wanted), step):
        await embed_batch(resources, space, wanted[start : start + step])


async def fill_space(space_name: str) -> None:
    """Give every existing item a job in ``space_name``, batch by batch, waking workers."""
    resources = current()
    if space_name not in resources.spaces.names():
        log.warning("fill of %s skipped: this worker does not have that space", space_name)
        return
    await fill_some(resources, space_name, batches=None)
