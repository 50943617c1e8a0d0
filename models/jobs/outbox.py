"""Embedding work as Postgres sees it: the outbox, claims, results and failures.

Postgres is the system of record. Each (user, item, space) has a row in ``embed_state``;
a Redis message only says "look at these ids". Whoever runs it claims the rows here first
(``FOR UPDATE SKIP LOCKED`` plus a lease), and a vector is written only if the content it
was computed from is still the current content.
"""

from __future__ import annotations

from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from models.db.rows import fetch_all
from models.embedding.spaces import Space
from models.jobs.messages import Job, Key
from models.observe import audit
from models.types import Claim, Embedded, FailedJob


async def claim(
    conn: AsyncConnection, space: Space, keys: list[Key], *, lease_seconds: float
) -> list[Claim]:
    """Claim the pending, unclaimed items among ``keys``; each claim counts an attempt."""
    return await fetch_all(
        conn,
        class_row(Claim),
        """
        WITH wanted AS (
            SELECT * FROM unnest(%(users)s::text[], %(ids)s::uuid[]) AS w(user_id, item_id)
        ), picked AS (
            SELECT e.user_id, e.item_id FROM embed_state e JOIN wanted USING (user_id, item_id)
            WHERE e.space = %(space)s AND e.status = 'pending'
              AND (e.claimed_until IS NULL OR e.claimed_until < now())
            FOR UPDATE OF e SKIP LOCKED
        ), claimed AS (
            UPDATE embed_state e
            SET attempts = e.attempts + 1,
                claimed_until = now() + make_interval(secs => %(lease)s)
            FROM picked
            WHERE e.user_id = picked.user_id AND e.item_id = picked.item_id
              AND e.space = %(space)s
            RETURNING e.user_id, e.item_id, e.kind, e.content_hash, e.attempts, e.last_error,
                      e.request_id
        )
        SELECT c.user_id, c.item_id AS id, c.kind, coalesce(m.content, k.content) AS content,
               c.content_hash, c.attempts, c.last_error, c.request_id
        FROM claimed c
        LEFT JOIN memories m ON c.kind = 'memory' AND m.user_id = c.user_id
                            AND m.id = c.item_id AND m.content_hash = c.content_hash
        LEFT JOIN chunks k ON c.kind = 'chunk' AND k.user_id = c.user_id
                          AND k.id = c.item_id AND k.content_hash = c.content_hash
        WHERE m.id IS NOT NULL OR k.id IS NOT NULL
        """,
        {
            "users": [k.user_id for k in keys],
            "ids": [k.item_id for k in keys],
            "space": space.name,
            "lease": lease_seconds,
        },
    )


async def store_vectors(conn: AsyncConnection, space: Space, results: list[Embedded]) -> int:
    """Write vectors and mark items ``ready`` in one transaction, if their content is current.

    A result whose content changed meanwhile, or whose item was deleted, writes nothing.
    Returns how many items became ready.
    """
    statement = sql.SQL(
        """
        WITH done AS (
            UPDATE embed_state
            SET status = 'ready', last_error = NULL, claimed_until = NULL, updated_at = now()
            WHERE user_id = %(user_id)s AND item_id = %(id)s AND space = %(space)s
              AND content_hash = %(hash)s AND status = 'pending'
            RETURNING user_id, item_id, kind
        )
        INSERT INTO {table} (user_id, item_id, kind, content_hash, embedding)
        SELECT user_id, item_id, kind, %(hash)s, %(embedding)s::{storage} FROM done
        ON CONFLICT (user_id, item_id)
        DO UPDATE SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash
        RETURNING item_id
        """
    ).format(table=sql.Identifier(space.table), storage=sql.SQL(space.storage))
    params = [
        {
            "user_id": r.user_id,
            "id": r.id,
            "space": space.name,
            "hash": r.content_hash,
            "embedding": r.embedding,
        }
        # in (user, type) order: the count triggers (migration 0011) take each user's count
        # row in that order, so two workers never wait for each other in a cycle
        for r in sorted(results, key=lambda r: (r.user_id, r.kind, r.id))
    ]
    if not params:
        return 0
    ready = 0
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(statement, params, returning=True)
        while True:
            ready += len(await cur.fetchall())
            if not cur.nextset():
                break
    return ready


async def record_failure(
    conn: AsyncConnection,
    space: Space,
    item: Claim,
    error: str,
    *,
    permanent: bool,
    max_attempts: int,
    retry_in_seconds: float,
) -> None:
    """Fail an item for good (permanent error, or out of attempts), or schedule a retry.

    A retry keeps the item ``pending`` and claimed until ``retry_in_seconds`` from now, so
    the sweep re-sends it after that back-off.
    """
    give_up = permanent or item.attempts >= max_attempts
    await conn.execute(
        """
        UPDATE embed_state
        SET status = CASE WHEN %(give_up)s THEN 'failed' ELSE status END,
            last_error = %(error)s,
            updated_at = now(),
            claimed_until = CASE WHEN %(give_up)s THEN NULL
                                 ELSE now() + make_interval(secs => %(retry_in)s) END
        WHERE user_id = %(user_id)s AND item_id = %(id)s AND space = %(space)s
          AND content_hash = %(hash)s AND status = 'pending'
        """,
        {
            "give_up": give_up,
            "error": error[:2000],
            "retry_in": retry_in_seconds,
            "user_id": item.user_id,
            "id": item.id,
            "space": space.name,
            "hash": item.content_hash,
        },
    )


async def due_for_requeue(
    conn: AsyncConnection, spaces: list[str], *, older_than_seconds: float, limit: int = 1000
) -> list[Job]:
    """Pending jobs of ``spaces`` that nobody holds and that have waited too long.

    Marks them queued now, so a second sweep (from another worker) skips them.
    """
    return await fetch_all(
        conn,
        class_row(Job),
        """
        WITH due AS (
            SELECT user_id, item_id, space FROM embed_state
            WHERE status = 'pending' AND space = ANY(%(spaces)s)
              AND queued_at < now() - make_interval(secs => %(age)s)
              AND (claimed_until IS NULL OR claimed_until < now())
            ORDER BY queued_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE embed_state e SET queued_at = now()
        FROM due
        WHERE e.user_id = due.user_id AND e.item_id = due.item_id AND e.space = due.space
        RETURNING e.space, e.user_id, e.item_id
        """,
        {"spaces": spaces, "age": older_than_seconds, "limit": limit},
    )


async def list_failed(
    conn: AsyncConnection, *, limit: int, after: Job | None = None
) -> list[FailedJob]:
    """Jobs that failed for good, in (user_id, id, space) order, after the job ``after``."""
    return await fetch_all(
        conn,
        class_row(FailedJob),
        """
        SELECT item_id AS id, user_id, kind AS type, space, last_error AS error, attempts,
               updated_at
        FROM embed_state
        WHERE status = 'failed'
          AND (%(after_user)s::text IS NULL
               OR (user_id, item_id, space) > (%(after_user)s, %(after_id)s, %(after_space)s))
        ORDER BY user_id, item_id, space
        LIMIT %(limit)s
        """,
        {
            "after_space": after.space if after else None,
            "after_user": after.user_id if after else None,
            "after_id": after.item_id if after else None,
            "limit": limit,
        },
    )


async def retry_failed(
    conn: AsyncConnection, item_id: UUID, *, actor: str, request_id: str | None = None
) -> list[Job]:
    """Send failed jobs of this item id back to ``pending`` with fresh attempts."""
    async with conn.transaction():
        retried = await fetch_all(
            conn,
            class_row(Job),
            """
            UPDATE embed_state
            SET status = 'pending', attempts = 0, last_error = NULL, claimed_until = NULL,
                queued_at = now(), updated_at = now(), pending_since = now(),
                request_id = %s
            WHERE item_id = %s AND status = 'failed'
            RETURNING space, user_id, item_id
            """,
            [request_id, item_id],
        )
        for job in retried:
            await audit.record(
                conn,
                actor=actor,
                action="job.retry",
                target=str(item_id),
                user_id=job.user_id,
                space=job.space,
            )
    return retried
