"""The embedding work at a glance, as an operator asks for it: per space, across users."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import class_row

from models.types import FailureReason as FailureReason
from models.types import QueueDepth as QueueDepth
from models.types import SpaceCounts
from models.types import SpaceStatus as SpaceStatus


async def space_status(conn: AsyncConnection) -> list[SpaceStatus]:
    """Each space that has jobs, in one pass over ``embed_state``."""
    async with conn.cursor(row_factory=class_row(SpaceStatus)) as cur:
        await cur.execute(
            """
            SELECT space,
                   count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'pending' AND last_error IS NOT NULL)
                       AS retrying,
                   count(*) FILTER (WHERE status = 'ready') AS ready,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'ready'
                                      AND updated_at > now() - interval '1 minute')
                       AS embedded_last_minute,
                   count(*) FILTER (WHERE status = 'ready'
                                      AND updated_at > now() - interval '5 minutes')
                       AS embedded_last_5_minutes,
                   extract(epoch FROM now() - min(pending_since)
                                            FILTER (WHERE status = 'pending'))::float8
                       AS oldest_pending_seconds
            FROM embed_state
            GROUP BY space
            ORDER BY space
            """
        )
        return await cur.fetchall()


async def failure_reasons(conn: AsyncConnection, *, limit: int) -> list[FailureReason]:
    """The ``limit`` most common errors of failed and retrying jobs, most jobs first."""
    async with conn.cursor(row_factory=class_row(FailureReason)) as cur:
        await cur.execute(
            """
            SELECT space, CASE WHEN status = 'failed' THEN 'failed' ELSE 'retrying' END AS status,
                   last_error AS error, count(*) AS count
            FROM embed_state
            WHERE status IN ('failed', 'pending') AND last_error IS NOT NULL
            GROUP BY 1, 2, 3
            ORDER BY count(*) DESC, 1, 2, 3
            LIMIT %(limit)s
            """,
            {"limit": limit},
        )
        return await cur.fetchall()


async def space_counts(conn: AsyncConnection) -> dict[str, SpaceCounts]:
    """Items by embedding state in each space (as far as the transaction's scope sees)."""
    cur = await conn.execute(
        "SELECT space, status, count(*) FROM embed_state GROUP BY space, status"
    )
    counts: dict[str, dict[str, int]] = {}
    for space, status, n in await cur.fetchall():
        counts.setdefault(space, {})[status] = n
    return {
        space: SpaceCounts(
            pending=c.get("pending", 0),
            ready=c.get("ready", 0),
            failed=c.get("failed", 0),
            total=sum(c.values()),
        )
        for space, c in counts.items()
    }
