"""Filling a space from the worker: fill steps in Postgres, a wake-up for each batch made."""

from __future__ import annotations

from models.db.scope import ALL_USERS, run_scoped
from models.jobs import fills
from models.jobs.messages import Job
from worker.resources import Resources

FILL_BATCH = 2000  # items a fill step gives a job, in one transaction


async def fill_some(resources: Resources, space_name: str, *, batches: int | None) -> int:
    """Run up to ``batches`` fill steps (all, if None); return how many jobs were made."""
    made = 0
    while batches is None or batches > 0:
        created = await run_scoped(
            resources.pool, ALL_USERS, fills.fill_step, space_name, limit=FILL_BATCH
        )
        if created is None:
            break
        await resources.wakeups.embed(
            [Job(space_name, user_id, item_id) for user_id, item_id in created]
        )
        made += len(created)
        batches = None if batches is None else batches - 1
    return made
