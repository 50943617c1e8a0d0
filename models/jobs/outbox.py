"""Embedding work as Postgres sees it: the outbox, claims, results and failures.

Postgres is the system of record. Each (user, item, space) has a row in ``embed_state``;
a Redis message only says "look at these ids". Whoever runs it claims the rows here first
(``FOR UPDATE SKIP LOCKED`` plus a lease), and a vector is written only if the content it
was computed from is still the current content.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, scalar_row

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import Space
from models.jobs.messages import Job, Key, Lane
from models.observe import audit
from models.types import Claim, Embedded, FailedJob

# in the order claims serve them (migration 0020)
LANES: tuple[Lane, ...] = ("interactive", "bulk")
BULK_SHARE = 4  # a bulk claim takes 1/BULK_SHARE of what an interactive one may


async def claim(
    conn: AsyncConnection, space: Space, *, limit: int, lease_seconds: float
) -> list[Claim]:
    """Claim up to ``limit`` of the space's waiting jobs, fairly; each claim counts an attempt.

    The interactive lane's jobs go before the bulk lane's, and a claim takes jobs of one
    lane only, so an interactive item is never encoded in a batch of bulk ones. Within a
    lane the users take turns (each one's oldest waiting job, then each one's second...),
    starting after the user the lane's previous claim ended with, so one user's many jobs
    delay another's few by about one claim. Claims of a space run one at a time (a
    transaction-scoped advisory lock), so concurrent workers take consecutive turns instead
    of the same rows.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('engram.claim ' || %s))", [space.name]
    )
    for lane in LANES:
        keys = await _turns(conn, space.name, lane, _lane_limit(lane, limit))
        if keys:  # a claim holds one lane: a chat's item is never encoded with bulk ones
            return await _claim_keys(conn, space, keys, lease_seconds=lease_seconds)
    return []


def _lane_limit(lane: Lane, limit: int) -> int:
    """A bulk claim takes a quarter of ``limit``: a worker busy with bulk work comes back for
    interactive work four times as often, and a batch of 16 long chunks encodes about as
    fast per chunk as one of 64."""
    return limit if lane == "interactive" else max(1, limit // BULK_SHARE)


async def _turns(conn: AsyncConnection, space: str, lane: Lane, limit: int) -> list[Key]:
    """The next ``limit`` jobs of the lane, its users in turns, and the lane's turn moved on."""
    last = await fetch_one(
        conn,
        scalar_row,
        "SELECT last_user FROM job_turns WHERE space = %s AND lane = %s",
        [space, lane],
    )
    users = await _waiting_users(conn, space, lane, after=last or "", until=None, limit=limit)
    if len(users) < limit and last is not None:  # round the circle: from the first user on
        users += await _waiting_users(
            conn, space, lane, after="", until=last, limit=limit - len(users)
        )
    if not users:
        return []
    keys = await fetch_all(
        conn,
        class_row(Key),
        """
        SELECT t.user_id, t.item_id FROM (
            SELECT f.user_id, f.item_id, u.turn_order,
                   row_number() OVER (PARTITION BY f.user_id
                                      ORDER BY f.pending_since, f.item_id) AS turn
            FROM unnest(%(users)s::text[]) WITH ORDINALITY AS u(user_id, turn_order)
            CROSS JOIN LATERAL (
                SELECT e.user_id, e.item_id, e.pending_since FROM embed_state e
                WHERE e.space = %(space)s AND e.lane = %(lane)s AND e.status = 'pending'
                  AND e.user_id = u.user_id
                  AND (e.claimed_until IS NULL OR e.claimed_until < now())
                ORDER BY e.pending_since, e.item_id
                LIMIT %(limit)s) f
        ) t
        ORDER BY t.turn, t.turn_order
        LIMIT %(limit)s
        """,
        {"users": users, "space": space, "lane": lane, "limit": limit},
    )
    if keys:
        await conn.execute(
            "INSERT INTO job_turns (space, lane, last_user) VALUES (%s, %s, %s) "
            "ON CONFLICT (space, lane) DO UPDATE SET last_user = EXCLUDED.last_user",
            [space, lane, keys[-1].user_id],
        )
    return keys


async def _waiting_users(
    conn: AsyncConnection, space: str, lane: Lane, *, after: str, until: str | None, limit: int
) -> list[str]:
    """Up to ``limit`` users with jobs in the lane that nobody holds, in id order after
    ``after`` (and up to ``until``), found by skipping from one user with pending jobs to the
    next in ``embed_state_waiting``; a user whose pending jobs are all held is passed over."""
    return await fetch_all(
        conn,
        scalar_row,
        """
        WITH RECURSIVE waiting(user_id, free, n) AS (
            SELECT %(after)s::text, false, 0  -- where the skipping starts; not a user
            UNION ALL
            SELECT later.user_id, free.found, w.n + free.found::int
            FROM waiting w
            CROSS JOIN LATERAL (
                SELECT e.user_id FROM embed_state e
                WHERE e.space = %(space)s AND e.lane = %(lane)s AND e.status = 'pending'
                  AND e.user_id > w.user_id
                ORDER BY e.user_id LIMIT 1) later
            CROSS JOIN LATERAL (
                SELECT EXISTS (
                    SELECT FROM embed_state e
                    WHERE e.space = %(space)s AND e.lane = %(lane)s AND e.status = 'pending'
                      AND e.user_id = later.user_id
                      AND (e.claimed_until IS NULL OR e.claimed_until < now())) AS found) free
            WHERE w.n < %(limit)s AND (%(until)s::text IS NULL OR w.user_id < %(until)s)
        )
        SELECT user_id FROM waiting
        WHERE free AND (%(until)s::text IS NULL OR user_id <= %(until)s)
        """,
        {"space": space, "lane": lane, "after": after, "until": until, "limit": limit},
    )


async def _claim_keys(
    conn: AsyncConnection, space: Space, keys: list[Key], *, lease_seconds: float
) -> list[Claim]:
    """Claim the pending, unclaimed items among ``keys``."""
    if not keys:
        return []
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
                      e.request_id, e.lane
        )
        SELECT c.user_id, c.item_id AS id, c.kind, coalesce(m.content, k.content) AS content,
               c.content_hash, c.attempts, c.last_error, c.request_id, c.lane
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


class InteractiveWork(NamedTuple):
    """The interactive lane of a space, as a bulk batch checks it between slices."""

    waiting: bool  # pending with no worker on it
    running: bool  # claimed by a worker now (not a retry's back-off)


async def interactive_work(conn: AsyncConnection, space: str) -> InteractiveWork:
    """Whether interactive work of ``space`` waits with no worker on it, and whether some is
    being embedded. A retry waiting out its back-off is claimed too, but counts as neither:
    it has an error."""
    found = await fetch_one(
        conn,
        class_row(InteractiveWork),
        """
        SELECT EXISTS (SELECT 1 FROM embed_state
                       WHERE space = %(space)s AND lane = 'interactive' AND status = 'pending'
                         AND (claimed_until IS NULL OR claimed_until < now())) AS waiting,
               EXISTS (SELECT 1 FROM embed_state
                       WHERE space = %(space)s AND lane = 'interactive' AND status = 'pending'
                         AND claimed_until >= now() AND last_error IS NULL) AS running
        """,
        {"space": space},
    )
    return found or InteractiveWork(waiting=False, running=False)  # (always one row)


async def release(conn: AsyncConnection, space: Space, items: Sequence[Claim]) -> None:
    """Give back claimed items not encoded: they wait again at once, and the attempt their
    claim counted is taken back."""
    await conn.execute(
        """
        UPDATE embed_state e SET claimed_until = NULL, attempts = greatest(e.attempts - 1, 0)
        FROM unnest(%(users)s::text[], %(ids)s::uuid[]) AS r(user_id, item_id)
        WHERE e.user_id = r.user_id AND e.item_id = r.item_id AND e.space = %(space)s
          AND e.status = 'pending'
        """,
        {"users": [i.user_id for i in items], "ids": [i.id for i in items], "space": space.name},
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
        DO UPDATE SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash,
                      indexed = false
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
    conn: AsyncConnection,
    item_id: UUID,
    *,
    actor: str,
    request_id: str | None = None,
    external: list[str] | None = None,
) -> list[Job]:
    """Send failed jobs of this item id back to ``pending`` with fresh attempts, but in the
    ``external`` spaces (no worker embeds there: their clients send the vectors)."""
    async with conn.transaction():
        retried = await fetch_all(
            conn,
            class_row(Job),
            """
            UPDATE embed_state
            SET status = 'pending', attempts = 0, last_error = NULL, claimed_until = NULL,
                queued_at = now(), updated_at = now(), pending_since = now(),
                request_id = %s
            WHERE item_id = %s AND status = 'failed' AND space <> ALL(%s)
            RETURNING space, user_id, item_id
            """,
            [request_id, item_id, external or []],
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
