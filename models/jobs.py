"""Embedding work as Postgres sees it: the outbox, claims, results and failures.

Postgres is the system of record. A Redis message only says "look at these ids"; whoever
runs it claims the rows here first (``FOR UPDATE SKIP LOCKED`` plus a lease), and a vector
is written only if the content it was computed from is still the current content.
"""

from __future__ import annotations

from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from models import audit
from models.spaces import Space
from models.types import Claim, Embedded, FailedJob

# What the HTTP edge sends and the worker runs: names only, so neither imports the other.
EMBED_QUEUE = "embeddings"
EMBED_ACTOR = "embed_items"

Key = tuple[str, UUID]  # (user_id, item id)


async def claim(conn: AsyncConnection, keys: list[Key], *, lease_seconds: float) -> list[Claim]:
    """Claim the pending, unclaimed items among ``keys``; each claim counts an attempt."""
    async with conn.cursor(row_factory=class_row(Claim)) as cur:
        await cur.execute(
            """
            WITH wanted AS (
                SELECT * FROM unnest(%(users)s::text[], %(ids)s::uuid[]) AS w(user_id, id)
            ), picked AS (
                SELECT m.user_id, m.id FROM memories m JOIN wanted USING (user_id, id)
                WHERE m.status = 'pending'
                  AND (m.claimed_until IS NULL OR m.claimed_until < now())
                FOR UPDATE OF m SKIP LOCKED
            )
            UPDATE memories m
            SET attempts = m.attempts + 1,
                claimed_until = now() + make_interval(secs => %(lease)s)
            FROM picked
            WHERE m.user_id = picked.user_id AND m.id = picked.id
            RETURNING m.user_id, m.id, m.content, m.content_hash, m.attempts, m.last_error
            """,
            {"users": [k[0] for k in keys], "ids": [k[1] for k in keys], "lease": lease_seconds},
        )
        return await cur.fetchall()


async def store_vectors(conn: AsyncConnection, space: Space, results: list[Embedded]) -> int:
    """Write vectors and mark items ``ready`` in one transaction, if their content is current.

    A result whose content changed meanwhile, or whose item was deleted, writes nothing.
    Returns how many items became ready.
    """
    statement = sql.SQL(
        """
        WITH done AS (
            UPDATE memories
            SET status = 'ready', last_error = NULL, claimed_until = NULL
            WHERE user_id = %(user_id)s AND id = %(id)s
              AND content_hash = %(hash)s AND status = 'pending'
            RETURNING user_id, id
        )
        INSERT INTO {table} (user_id, item_id, kind, content_hash, embedding)
        SELECT user_id, id, 'memory', %(hash)s, %(embedding)s FROM done
        ON CONFLICT (user_id, item_id)
        DO UPDATE SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash
        RETURNING item_id
        """
    ).format(table=sql.Identifier(space.table))
    params = [
        {"user_id": r.user_id, "id": r.id, "hash": r.content_hash, "embedding": r.embedding}
        for r in results
    ]
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
        UPDATE memories
        SET status = CASE WHEN %(give_up)s THEN 'failed' ELSE status END,
            last_error = %(error)s,
            claimed_until = CASE WHEN %(give_up)s THEN NULL
                                 ELSE now() + make_interval(secs => %(retry_in)s) END
        WHERE user_id = %(user_id)s AND id = %(id)s AND content_hash = %(hash)s
          AND status = 'pending'
        """,
        {
            "give_up": give_up,
            "error": error[:2000],
            "retry_in": retry_in_seconds,
            "user_id": item.user_id,
            "id": item.id,
            "hash": item.content_hash,
        },
    )


async def due_for_requeue(
    conn: AsyncConnection, *, older_than_seconds: float, limit: int = 1000
) -> list[tuple[str, str, UUID]]:
    """(space, user_id, id) of pending items nobody holds that have waited too long.

    Marks them queued now, so a second sweep (from another worker) skips them.
    """
    cur = await conn.execute(
        """
        WITH due AS (
            SELECT user_id, id FROM memories
            WHERE status = 'pending'
              AND queued_at < now() - make_interval(secs => %(age)s)
              AND (claimed_until IS NULL OR claimed_until < now())
            ORDER BY queued_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE memories m SET queued_at = now()
        FROM due WHERE m.user_id = due.user_id AND m.id = due.id
        RETURNING m.space, m.user_id, m.id
        """,
        {"age": older_than_seconds, "limit": limit},
    )
    return [(row[0], row[1], row[2]) for row in await cur.fetchall()]


async def list_failed(
    conn: AsyncConnection, *, limit: int, after: Key | None = None
) -> list[FailedJob]:
    """Items that failed for good, in (user_id, id) order, after the key ``after``."""
    async with conn.cursor(row_factory=class_row(FailedJob)) as cur:
        await cur.execute(
            """
            SELECT id, user_id, 'memory' AS type, space, last_error AS error, attempts, updated_at
            FROM memories
            WHERE status = 'failed'
              AND (%(after_user)s::text IS NULL OR (user_id, id) > (%(after_user)s, %(after_id)s))
            ORDER BY user_id, id
            LIMIT %(limit)s
            """,
            {
                "after_user": after[0] if after else None,
                "after_id": after[1] if after else None,
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def retry_failed(
    conn: AsyncConnection, item_id: UUID, *, actor: str
) -> list[tuple[str, str, UUID]]:
    """Send failed items with this id back to ``pending`` with fresh attempts."""
    async with conn.transaction():
        retried = await _reset_failed(conn, item_id)
        for _, user_id, _ in retried:
            await audit.record(
                conn, actor=actor, action="job.retry", target=str(item_id), user_id=user_id
            )
    return retried


async def _reset_failed(conn: AsyncConnection, item_id: UUID) -> list[tuple[str, str, UUID]]:
    cur = await conn.execute(
        """
        UPDATE memories
        SET status = 'pending', attempts = 0, last_error = NULL, claimed_until = NULL,
            queued_at = now()
        WHERE id = %s AND status = 'failed'
        RETURNING space, user_id, id
        """,
        [item_id],
    )
    return [(row[0], row[1], row[2]) for row in await cur.fetchall()]
