"""The indexer: puts the vectors of users above the exact-search limit into HNSW indexes.

Each worker process runs one beside its actors. A pass finds the users whose vectors the
index should hold and does not (``models.embedding.indexing``), and indexes a batch of
each, the users with the fewest waiting first; passes follow one another while any is
waiting, and the indexer sleeps ``index_interval_seconds`` when none is. Batches skip the
vectors another worker's indexer holds, so several processes share the work.
"""

from __future__ import annotations

import logging
import threading

from dramatiq.asyncio import EventLoopThread

from models.db.scope import ALL_USERS, run_scoped
from models.embedding import indexing
from worker.resources import Resources

log = logging.getLogger("engram.indexer")

USERS_A_PASS = 50


def index_forever(resources: Resources, loop: EventLoopThread, stop: threading.Event) -> None:
    """Index on ``loop`` until ``stop`` is set, resting when nothing is waiting."""
    while not stop.is_set():
        try:
            indexed = loop.run_coroutine(index_once(resources))
        except Exception:
            log.warning("indexing failed; will try again", exc_info=True)
            indexed = 0
        if not indexed:
            stop.wait(resources.settings.worker.index_interval_seconds)


async def index_once(resources: Resources) -> int:
    """One pass: a batch of each waiting user's vectors indexed; return how many."""
    pool, spaces = resources.pool, resources.spaces
    waiting = await run_scoped(
        pool,
        ALL_USERS,
        indexing.waiting,
        spaces.names(),
        exact_max_rows=resources.settings.search.exact_max_rows,
        limit=USERS_A_PASS,
    )
    indexed = 0
    for user in waiting:
        space = spaces.get(user.space)
        done = await run_scoped(
            pool, user.user_id, indexing.index_batch, space, user.user_id, user.kind,
            limit=indexing.INDEX_BATCH,
        )  # fmt: skip
        if done:
            log.info("indexed %d %s vectors of a user in %s", done, user.kind, space.name)
        indexed += done
    return indexed
