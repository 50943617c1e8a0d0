"""What every stored item shares: its content hash, when it is live, the per-user write
locks, its id (unique across memories and chunks), and the deletion of its vectors."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Concatenate, Literal, ParamSpec, TypeVar
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import scalar_row

from models.db.rows import fetch_all
from models.embedding.spaces import vector_table
from models.jobs.messages import Job
from models.types import ItemType

# A memory (alias ``m``) is live until it expires; expired ones vanish from every read at
# once, and a sweep deletes them later.
LIVE_MEMORY = "(m.expires_at IS NULL OR m.expires_at > now())"

Writes = Literal["memories", "documents"]


P = ParamSpec("P")
T = TypeVar("T")


async def in_language(
    conn: AsyncConnection,
    text_config: str,
    work: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``work(conn, ...)`` with the words of the items it writes indexed in ``text_config``
    (a text-search configuration the caller checked): an item's ``text_config`` defaults to
    the transaction's ``engram.text_config`` (migration 0018), set here until it ends."""
    await conn.execute("SELECT set_config('engram.text_config', %s, true)", [text_config])
    return await work(conn, *args, **kwargs)


def content_hash(content: str) -> bytes:
    """What a vector is made from: the vector is current while this hash matches."""
    return hashlib.sha256(content.encode()).digest()


async def lock_writes(conn: AsyncConnection, user_id: str, *kinds: Writes) -> None:
    """Serialise the user's writes of these kinds until the transaction ends, so that two
    concurrent writes of the same content cannot both store it. Locks are taken in the order
    given: take them in the order of ``Writes``."""
    for kind in kinds:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s || %s, 0))", [f"{kind}:", user_id]
        )


async def named_by_the_other_type(
    conn: AsyncConnection, user_id: str, kind: ItemType, ids: list[UUID]
) -> list[UUID]:
    """Which of ``ids`` (for new items of ``kind``) already name one of the user's items of
    the other type: memories and chunks share their ids' space (jobs, vectors)."""
    other = "chunks" if kind == "memory" else "memories"
    query = sql.SQL("SELECT id FROM {} WHERE user_id = %s AND id = ANY(%b) ORDER BY id")
    return await fetch_all(conn, scalar_row, query.format(sql.Identifier(other)), [user_id, ids])


async def delete_vectors(conn: AsyncConnection, jobs: Iterable[Job]) -> None:
    """Delete the vectors of these (space, user, item) jobs, one statement a space."""
    by_space: dict[str, list[Job]] = {}
    for job in jobs:
        by_space.setdefault(job[0], []).append(job)
    for space, gone in by_space.items():
        await conn.execute(
            sql.SQL(
                "DELETE FROM {} v USING unnest(%s::text[], %s::uuid[]) AS k(user_id, item_id) "
                "WHERE v.user_id = k.user_id AND v.item_id = k.item_id"
            ).format(sql.Identifier(vector_table(space))),
            [[job[1] for job in gone], [job[2] for job in gone]],
        )
