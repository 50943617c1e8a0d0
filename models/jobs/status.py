"""The embedding work at a glance, as an operator asks for it: per space, across users."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row

from models.db.rows import fetch_all
from models.types import FailureReason as FailureReason
from models.types import QueueDepth as QueueDepth
from models.types import SpaceCounts, Status
from models.types import SpaceStatus as SpaceStatus


async def space_status(conn: AsyncConnection) -> list[SpaceStatus]:
    """Each space that has jobs, in one pass over ``embed_state``."""
    return await fetch_all(
        conn,
        class_row(SpaceStatus),
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
        """,
    )


async def failure_reasons(conn: AsyncConnection, *, limit: int) -> list[FailureReason]:
    """The ``limit`` most common errors of failed and retrying jobs, most jobs first."""
    return await fetch_all(
        conn,
        class_row(FailureReason),
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


class _Count(NamedTuple):
    space: str
    status: str
    n: int


async def space_counts(conn: AsyncConnection) -> dict[str, SpaceCounts]:
    """Items by embedding state in each space (as far as the transaction's scope sees)."""
    rows = await fetch_all(
        conn,
        class_row(_Count),
        "SELECT space, status, count(*) AS n FROM embed_state GROUP BY space, status",
    )
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row.space, {})[row.status] = row.n
    return {
        space: SpaceCounts(
            pending=c.get("pending", 0),
            ready=c.get("ready", 0),
            failed=c.get("failed", 0),
            total=sum(c.values()),
        )
        for space, c in counts.items()
    }


class ItemState(msgspec.Struct, frozen=True, kw_only=True):
    """An item's embedding job in one space."""

    space: str
    status: Status
    attempts: int
    error: str | None
    updated_at: datetime


async def item_states(conn: AsyncConnection, user_id: str, item_id: UUID) -> list[ItemState]:
    """The item's embedding state in every space it has a job in, by space."""
    return await fetch_all(
        conn,
        class_row(ItemState),
        "SELECT space, status, attempts, last_error AS error, updated_at FROM embed_state "
        "WHERE user_id = %s AND item_id = %s ORDER BY space",
        [user_id, item_id],
    )
