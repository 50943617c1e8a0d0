"""The sweep: re-sends pending items whose wake-up message was lost or is overdue.

Redis may lose every message; Postgres still knows what is pending. Each worker process
sweeps periodically; ``FOR UPDATE SKIP LOCKED`` keeps concurrent sweeps from re-sending
the same items, and a per-item ``queued_at`` keeps one sweep from re-sending too often.
The sweep also resumes fills whose worker died, and deletes expired memories.
"""

from __future__ import annotations

import logging
import threading

from dramatiq.asyncio import EventLoopThread

from models.db.scope import ALL_USERS, run_scoped
from models.jobs import fills, outbox
from models.store import memories
from worker.fill import fill_some
from worker.resources import Resources

log = logging.getLogger("engram.sweeper")

EXPIRE_BATCH = 1000  # expired memories deleted a sweep


def sweep_forever(resources: Resources, loop: EventLoopThread, stop: threading.Event) -> None:
    """Sweep on ``loop`` now, then every ``sweep_interval_seconds`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            sent = loop.run_coroutine(sweep_once(resources))
            if sent:
                log.info("re-sent %d pending items", sent)
        except Exception:
            log.warning("sweep failed; will try again", exc_info=True)
        stop.wait(resources.settings.worker.sweep_interval_seconds)


async def sweep_once(resources: Resources) -> int:
    """Send wake-ups for overdue pending jobs, and resume unfinished fills; return how many."""
    pool, known = resources.pool, resources.spaces.names()
    resumed = 0
    for space in await run_scoped(pool, ALL_USERS, fills.unfinished_fills, known):
        # a fill whose worker died carries on from its saved position, a step a sweep
        resumed += await fill_some(resources, space, batches=1)
    due = await run_scoped(
        pool,
        ALL_USERS,
        outbox.due_for_requeue,
        known,
        older_than_seconds=resources.settings.worker.requeue_after_seconds,
    )
    await resources.wakeups.embed(due)
    expired = await run_scoped(pool, ALL_USERS, memories.delete_expired, limit=EXPIRE_BATCH)
    if expired:
        log.info("deleted %d expired memories", expired)
    return len(due) + resumed
