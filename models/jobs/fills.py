"""Filling a space: every existing item gets a job in a space added later, online.

A fill is recorded in ``space_fills`` under a table lock that waits for writers in flight;
writers read the fills ``FOR SHARE`` to learn which spaces to add jobs in, so every item is
either written after the fill is recorded or seen by its scan. The fill walks items in key
order and saves its position with each step, so it resumes after a crash.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, scalar_row

from models.db.rows import fetch_all, fetch_one
from models.jobs.messages import Key
from models.observe import audit
from models.types import ItemType


class FillProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A fill: when it was requested and by whom, and when it finished filling."""

    space: str
    requested_at: datetime
    requested_by: str
    filled_at: datetime | None


class _Scanned(NamedTuple):
    """A row of a fill step: a job ``created`` for an item, or an item ``scanned``."""

    what: str
    user_id: str | None
    item_id: UUID | None


async def fill_spaces(conn: AsyncConnection) -> list[str]:
    """The spaces being filled, or filled, with every item: new items go there too.

    ``FOR SHARE`` holds off a new fill until this transaction's items are committed, so a
    fill's scan can never miss an item written while it starts (see ``request_fill``).
    """
    return await fetch_all(conn, scalar_row, "SELECT space FROM space_fills FOR SHARE")


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
    """Which of ``spaces`` are still being filled."""
    return await fetch_all(
        conn,
        scalar_row,
        "SELECT space FROM space_fills WHERE filled_at IS NULL AND space = ANY(%s)",
        [spaces],
    )


async def fill_step(conn: AsyncConnection, space: str, *, limit: int) -> list[Key] | None:
    """Give the next ``limit`` items (memories, then chunks, in key order) a pending job in
    ``space``.

    Returns the keys of the jobs created, or None when the fill is complete (or not
    requested). The fill's position is kept in ``space_fills``, so it resumes after a crash.
    """
    async with conn.transaction():
        position = await fetch_one(
            conn,
            class_row(_Position),
            "SELECT phase, after_user, after_id FROM space_fills "
            "WHERE space = %s AND filled_at IS NULL FOR UPDATE",
            [space],
        )
        if position is None:
            return None
        phase = position.phase
        rows = await fetch_all(
            conn,
            class_row(_Scanned),
            sql.SQL(
                """
                WITH batch AS (
                    SELECT user_id, id, content_hash FROM {table}
                    WHERE %(after_user)s::text IS NULL
                       OR (user_id, id) > (%(after_user)s, %(after_id)s)
                    ORDER BY user_id, id
                    LIMIT %(limit)s
                ), created AS (
                    INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, lane)
                    SELECT user_id, id, %(space)s, %(kind)s, content_hash, 'bulk' FROM batch
                    ON CONFLICT DO NOTHING
                    RETURNING user_id, item_id
                ), last AS (
                    SELECT user_id, id FROM batch ORDER BY user_id DESC, id DESC LIMIT 1
                ), moved AS (
                    UPDATE space_fills f
                    SET after_user = last.user_id, after_id = last.id
                    FROM last WHERE f.space = %(space)s
                )
                SELECT 'created' AS what, user_id, item_id FROM created
                UNION ALL SELECT 'scanned', NULL, NULL FROM batch
                """
            ).format(table=sql.Identifier(_FILL_TABLES[phase])),
            {
                "space": space,
                "kind": phase,
                "after_user": position.after_user,
                "after_id": position.after_id,
                "limit": limit,
            },
        )
        created = [Key(r.user_id, r.item_id) for r in rows if r.user_id is not None and r.item_id]
        scanned = sum(1 for r in rows if r.what == "scanned")
        if scanned < limit:
            # this table is done: on to the next, or the fill is complete
            following = _FILL_PHASES[_FILL_PHASES.index(phase) + 1 :]
            await conn.execute(
                "UPDATE space_fills SET phase = %s, after_user = NULL, after_id = NULL, "
                "filled_at = CASE WHEN %s THEN now() END WHERE space = %s",
                [following[0] if following else phase, not following, space],
            )
        return created


class _Position(NamedTuple):
    """Where a fill is: the table it walks (by item type), and the last key it gave a job."""

    phase: ItemType
    after_user: str | None
    after_id: UUID | None


# A fill walks memories, then chunks (of every generation: a pending one goes live later).
_FILL_PHASES = ("memory", "chunk")
_FILL_TABLES = {"memory": "memories", "chunk": "chunks"}


async def fill_progress(conn: AsyncConnection) -> dict[str, FillProgress]:
    """Each fill, by space."""
    fills = await fetch_all(
        conn,
        class_row(FillProgress),
        "SELECT space, requested_at, requested_by, filled_at FROM space_fills",
    )
    return {fill.space: fill for fill in fills}


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
