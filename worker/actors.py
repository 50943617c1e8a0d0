"""Actors: thin and idempotent, they take ids and find everything else in Postgres."""

from __future__ import annotations

import logging

from worker.embed import embed_batch
from worker.fill import fill_some
from worker.resources import current

log = logging.getLogger("engram.worker")


async def embed_items(space_name: str, keys: list[list[str]]) -> None:
    """Embed as many of ``space_name``'s waiting items as ``keys`` ([user_id, id] pairs)
    names, taking them as the claims choose (interactive first, users in turns), not
    necessarily these: a message is a share of the work, whoever's it turns out to be."""
    resources = current()
    if space_name not in resources.spaces.names():
        # a worker configured with that space (its sweep) will take these jobs
        log.warning("message for space %s skipped: not configured here", space_name)
        return
    space = resources.spaces.get(space_name)
    left = len(keys)
    while left > 0:
        claimed = await embed_batch(
            resources, space, limit=min(left, resources.settings.encoder.batch_size)
        )
        if claimed == 0:  # nothing waits that nobody holds
            return
        left -= claimed


async def fill_space(space_name: str) -> None:
    """Give every existing item a job in ``space_name``, batch by batch, waking workers."""
    resources = current()
    if space_name not in resources.spaces.names():
        log.warning("fill of %s skipped: this worker does not have that space", space_name)
        return
    await fill_some(resources, space_name, batches=None)
