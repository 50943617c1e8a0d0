"""Embedding work as Postgres sees it: the outbox, claims, results, failures, space fills.

Postgres is the system of record. Each (user, item, space) has a row in ``embed_state``;
a Redis message only says "look at these ids". Whoever runs it claims the rows here first
(``FOR UPDATE SKIP LOCKED`` plus a lease), and a vector is written only if the content it
was computed from is still the current content.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from models.spaces import Space
from models.store import audit
from models.types import Claim, Embedded, FailedJob, SpaceCounts

# What the HTTP edge sends and the worker runs: names only, so neither imports the other.
EMBED_QUEUE = "embeddings"
EMBED_ACTOR = "embed_items"
FILL_ACTOR = "fill_space"

Key = tuple[str, UUID]  # (user_id, item id)
Job = tuple[str, str, UUID]  # (space, user_id, item id)


async def claim(
    conn: AsyncConnection, space: Space, keys: list[Key], *, lease_seconds: float
) -> list[Claim]:
    """Claim the pending, unclaimed items among ``keys``; each claim counts an attempt."""
    async with conn.cursor(row_factory=class_row(Claim)) as cur:
        await cur.execute(
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
                "users": [k[0] for k in keys],
                "ids": [k[1] for k in keys],
                "space": space.name,
                "lease": lease_seconds,
            },
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
    cur = await conn.execute(
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
    return [(row[0], row[1], row[2]) for row in await cur.fetchall()]


async def list_failed(
    conn: AsyncConnection, *, limit: int, after: Job | None = None
) -> list[FailedJob]:
    """Jobs that failed for good, in (user_id, id, space) order, after the job ``after``."""
    async with conn.cursor(row_factory=class_row(FailedJob)) as cur:
        await cur.execute(
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
                "after_space": after[0] if after else None,
                "after_user": after[1] if after else None,
                "after_id": after[2] if after else None,
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def retry_failed(
    conn: AsyncConnection, item_id: UUID, *, actor: str, request_id: str | None = None
) -> list[Job]:
    """Send failed jobs of this item id back to ``pending`` with fresh attempts."""
    async with conn.transaction():
        cur = await conn.execute(
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
        retried: list[Job] = [(row[0], row[1], row[2]) for row in await cur.fetchall()]
        for space, user_id, _ in retried:
            await audit.record(
                conn,
                actor=actor,
                action="job.retry",
                target=str(item_id),
                user_id=user_id,
                space=space,
            )
    return retried


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


async def fill_spaces(conn: AsyncConnection) -> list[str]:
    """The spaces being filled, or filled, with every item: new items go there too.

    ``FOR SHARE`` holds off a new fill until this transaction's items are committed, so a
    fill's scan can never miss an item written while it starts (see ``request_fill``).
    """
    cur = await conn.execute("SELECT space FROM space_fills FOR SHARE")
    return [row[0] for row in await cur.fetchall()]


async def request_fill(conn: AsyncConnection, space: str, *, actor: str) -> None:
    """Start (or restart) filling ``space`` with every existing item; audited."""
    async with conn.transaction():
        # Waits for writers holding FOR SHARE (``fill_spaces``): from here on, every new
        # item lands in this space too, and every older one is visible to the fill's scan.
        await conn.execute("LOCK TABLE space_fills IN EXCLUSIVE MODE")
        await conn.execute(
            """
            INSERT INTO space_fills (space, requested_by) VALUES (%s, %s)
            ON CONFLICT (space) DO UPDATE
            SET requested_at = now(), requested_by = EXCLUDED.requested_by,
                phase = 'memory', after_user = NULL, after_id = NULL, filled_at = NULL
            """,
            [space, actor],
        )
        await audit.record(conn, actor=actor, action="space.fill", target=space)


async def unfinished_fills(conn: AsyncConnection, spaces: list[str]) -> list[str]:
    cur = await conn.execute(
        "SELECT space FROM space_fills WHERE filled_at IS NULL AND space = ANY(%s)", [spaces]
    )
    return [row[0] for row in await cur.fetchall()]


async def fill_step(conn: AsyncConnection, space: str, *, limit: int) -> list[Key] | None:
    """Give the next ``limit`` items (memories, then chunks, in key order) a pending job in
    ``space``.

    Returns the keys of the jobs created, or None when the fill is complete (or not
    requested). The fill's position is kept in ``space_fills``, so it resumes after a crash.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT phase, after_user, after_id FROM space_fills "
            "WHERE space = %s AND filled_at IS NULL FOR UPDATE",
            [space],
        )
        position = await cur.fetchone()
        if position is None:
            return None
        phase, after_user, after_id = position
        cur = await conn.execute(
            sql.SQL(
                """
                WITH batch AS (
                    SELECT user_id, id, content_hash FROM {table}
                    WHERE %(after_user)s::text IS NULL
                       OR (user_id, id) > (%(after_user)s, %(after_id)s)
                    ORDER BY user_id, id
                    LIMIT %(limit)s
                ), created AS (
                    INSERT INTO embed_state (user_id, item_id, space, kind, content_hash)
                    SELECT user_id, id, %(space)s, %(kind)s, content_hash FROM batch
                    ON CONFLICT DO NOTHING
                    RETURNING user_id, item_id
                ), last AS (
                    SELECT user_id, id FROM batch ORDER BY user_id DESC, id DESC LIMIT 1
                ), moved AS (
                    UPDATE space_fills f
                    SET after_user = last.user_id, after_id = last.id
                    FROM last WHERE f.space = %(space)s
                )
                SELECT 'created', user_id, item_id FROM created
                UNION ALL SELECT 'scanned', NULL, NULL FROM batch
                """
            ).format(table=sql.Identifier(_FILL_TABLES[phase])),
            {
                "space": space,
                "kind": phase,
                "after_user": after_user,
                "after_id": after_id,
                "limit": limit,
            },
        )
        rows = await cur.fetchall()
        created: list[Key] = [(r[1], r[2]) for r in rows if r[0] == "created"]
        scanned = sum(1 for r in rows if r[0] == "scanned")
        if scanned < limit:
            # this table is done: on to the next, or the fill is complete
            following = _FILL_PHASES[_FILL_PHASES.index(phase) + 1 :]
            await conn.execute(
                "UPDATE space_fills SET phase = %s, after_user = NULL, after_id = NULL, "
                "filled_at = CASE WHEN %s THEN now() END WHERE space = %s",
                [following[0] if following else phase, not following, space],
            )
        return created


# A fill walks memories, then chunks (of every generation: a pending one goes live later).
_FILL_PHASES = ("memory", "chunk")
_FILL_TABLES = {"memory": "memories", "chunk": "chunks"}


async def fill_progress(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    """Each fill: when it was requested and by whom, and when it finished filling."""
    cur = await conn.execute("SELECT space, requested_at, requested_by, filled_at FROM space_fills")
    return {
        row[0]: {"requested_at": row[1], "requested_by": row[2], "filled_at": row[3]}
        for row in await cur.fetchall()
    }


async def drop_space(conn: AsyncConnection, space: str, table: str, *, actor: str) -> int:
    """Forget a space: its vectors, its jobs and its fill. Items stay; returns vectors gone.

    The order closes every race with writers. Deleting the fill first waits for writers
    that read it (``fill_spaces`` holds it ``FOR SHARE``) and for a running ``fill_step``;
    deleting the jobs next waits for a worker storing a vector (``store_vectors`` locks its
    job), and a store that comes later finds no job and writes nothing. So the last delete,
    under a fresh snapshot, sees every vector that will ever be written to this space.
    """
    async with conn.transaction():
        await conn.execute("DELETE FROM space_fills WHERE space = %s", [space])
        await conn.execute("DELETE FROM embed_state WHERE space = %s", [space])
        cur = await conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        dropped = cur.rowcount
        await audit.record(conn, actor=actor, action="space.drop", target=space, vectors=dropped)
    return dropped
