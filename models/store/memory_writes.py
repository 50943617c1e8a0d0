"""Writing a batch of memories: new ones, the same content again, replacements and
deletions, in one transaction (``insert_memories``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from uuid import UUID, uuid4

import msgspec
import numpy as np
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all
from models.embedding.spaces import Space
from models.errors import Conflict
from models.jobs import fills
from models.jobs.messages import Job
from models.store.items import (
    LIVE_MEMORY,
    content_hash,
    lock_writes,
    named_by_the_other_type,
)
from models.store.memories import Written, delete_where, get_memories, store_client_vectors
from models.types import NewMemory


async def insert_memories(
    conn: AsyncConnection,
    user_id: str,
    space: Space,
    items: list[NewMemory],
    *,
    request_id: str | None = None,
    replace: bool = False,
    delete: Sequence[UUID] = (),
) -> Written:
    """Insert new memories as ``pending``, each content stored once; answers in request
    order.

    - A memory is the same one again when its id is known with the same content, or, for an
      item without an id, when the user has its content, live, in the same session (or both
      without one; within the batch too). Nothing is stored or embedded again: the item's
      metadata, importance and TTL replace the stored ones (as a document sent again
      replaces its title, source and metadata), and the answer is marked a duplicate.
    - A known id with other content is a ``Conflict``, and nothing of the batch is written;
      with ``replace`` it takes the item's content (embedded again: its jobs go back to
      pending, and until then search finds it by its old vector), metadata, session,
      importance, TTL and event time (when given). An expired memory that the sweep has not
      deleted yet is a ``Conflict`` too; with ``replace`` it is the item's again.
      A new id always names a new memory, whatever its content.
    - The memories of ``delete`` (ids of the user; unknown ones are skipped) are deleted
      with their jobs and vectors, after the writes.
    - Each new memory gets a job in ``space`` and in every space being filled, which
      remembers ``request_id`` (the HTTP request's, for the worker's log lines). In an
      external space the memory brings its vector (``NewMemory.vector``): it is stored in
      the same transaction and the memory is ``ready`` there at once, with no job. A memory
      written again keeps the vector it has.

    One transaction, serialised per user, so two concurrent writes of the same text cannot
    both store it.
    """
    hashes = [content_hash(item.content) for item in items]
    async with conn.transaction():
        await lock_writes(conn, user_id, "memories")
        known = await _known(conn, user_id, items, hashes)
        answer: list[UUID] = []
        duplicate: list[bool] = []
        fresh: list[tuple[NewMemory, bytes]] = []
        fresh_ids: list[UUID] = []
        again: dict[UUID, NewMemory] = {}  # the same memory again: its fields, the last wins
        replaced: dict[UUID, NewMemory] = {}  # known ids taking new content: the last wins
        for item, digest in zip(items, hashes, strict=True):
            same = (
                known.by_id.get(item.id)
                if item.id is not None
                else known.by_content.get((item.session_id, digest))
            )
            if (
                replace
                and item.id is not None
                and _replaces(item.id, same, digest, known, replaced)
            ):
                if known.spaces.get(item.id, space.name) != space.name:
                    raise Conflict(
                        f"memory {item.id} is in space {known.spaces[item.id]}: "
                        "replace it with a batch written into that space"
                    )
                replaced[item.id] = item
                again.pop(item.id, None)
                answer.append(item.id)
                duplicate.append(False)
                continue
            if same is not None:
                if same[1] != digest:
                    raise Conflict(f"memory {item.id} already exists with other content")
                answer.append(same[0])
                duplicate.append(True)
                again[same[0]] = item
                continue
            new_id = item.id or uuid4()
            stored = (new_id, digest)
            known.by_id[new_id] = stored
            if item.id is None:
                known.by_content[(item.session_id, digest)] = stored
            fresh.append((msgspec.structs.replace(item, id=new_id), digest))
            fresh_ids.append(new_id)
            answer.append(new_id)
            duplicate.append(False)
        if taken := await named_by_the_other_type(conn, user_id, "memory", fresh_ids):
            raise Conflict(f"id {taken[0]} already names a chunk of a document")
        created = await _insert(conn, user_id, space, fresh, request_id) if fresh else []
        if again:
            await _describe_again(conn, user_id, again)
        if replaced:
            created += await _replace(conn, user_id, space, replaced, request_id)
        deleted = 0
        if delete:
            deleted = await delete_where(
                conn,
                "SELECT user_id, id FROM memories WHERE user_id = %(user)s AND id = ANY(%(ids)s)",
                {"user": user_id, "ids": list(delete)},
            )
        found = {m.id: m for m in await get_memories(conn, user_id, answer)}
        if missing := [i for i in answer if i not in found]:
            # an expired memory keeps its id until the sweep deletes it
            raise Conflict(f"memory {missing[0]} has expired and is being deleted")
    return Written(
        memories=[found[i] for i in answer], jobs=created, duplicate=duplicate, deleted=deleted
    )


async def _describe_again(
    conn: AsyncConnection, user_id: str, again: dict[UUID, NewMemory]
) -> None:
    """The metadata, importance, TTL and event time (when given) of memories written again,
    where they changed."""
    await conn.execute(
        """
        UPDATE memories m
        SET metadata = a.metadata, importance = a.importance,
            expires_at = now() + make_interval(secs => a.ttl),
            occurred_at = coalesce(a.occurred_at, m.occurred_at), updated_at = now()
        FROM unnest(%(ids)s::uuid[], %(metadata)b::jsonb[], %(importance)s::float8[],
                    %(ttls)s::float8[], %(occurred)s::timestamptz[])
             AS a(id, metadata, importance, ttl, occurred_at)
        WHERE m.user_id = %(user_id)s AND m.id = a.id
          AND ((m.metadata, m.importance) IS DISTINCT FROM (a.metadata, a.importance)
               OR coalesce(a.occurred_at, m.occurred_at) <> m.occurred_at
               OR a.ttl IS NOT NULL OR m.expires_at IS NOT NULL)
        """,
        {
            "user_id": user_id,
            "ids": list(again),
            "metadata": [Jsonb(item.metadata) for item in again.values()],
            "importance": [item.importance for item in again.values()],
            "ttls": [item.ttl_seconds for item in again.values()],
            "occurred": [item.occurred_at for item in again.values()],
        },
    )


def _replaces(
    memory_id: UUID,
    same: tuple[UUID, bytes] | None,
    digest: bytes,
    known: _Known,
    replaced: dict[UUID, NewMemory],
) -> bool:
    """Whether a write with ``replace`` takes the known memory over: other content, an
    expired memory, or one the batch already takes over."""
    if same is None:
        return False
    return same[1] != digest or memory_id in known.expired or memory_id in replaced


async def _replace(
    conn: AsyncConnection,
    user_id: str,
    space: Space,
    replaced: dict[UUID, NewMemory],
    request_id: str | None,
) -> list[Job]:
    """Known memories of ``space`` take the items' content and fields; a new content's jobs
    go back to pending (the old vectors serve search until the new ones are stored), but in
    an external space, where the items' vectors are stored at once, ready."""
    items = list(replaced.values())
    hashes = [content_hash(item.content) for item in items]
    await conn.execute(
        """
        UPDATE memories m
        SET content = a.content, content_hash = a.hash, metadata = a.metadata,
            session_id = a.session_id, importance = a.importance,
            expires_at = now() + make_interval(secs => a.ttl),
            occurred_at = coalesce(a.occurred_at, m.occurred_at), updated_at = now()
        FROM unnest(%(ids)s::uuid[], %(contents)b::text[], %(hashes)s::bytea[],
                    %(metadata)b::jsonb[], %(sessions)s::text[], %(importance)s::float8[],
                    %(ttls)s::float8[], %(occurred)s::timestamptz[])
             AS a(id, content, hash, metadata, session_id, importance, ttl, occurred_at)
        WHERE m.user_id = %(user_id)s AND m.id = a.id
        """,
        {
            "user_id": user_id,
            "ids": list(replaced),
            "contents": [item.content for item in items],
            "hashes": hashes,
            "metadata": [Jsonb(item.metadata) for item in items],
            "sessions": [item.session_id for item in items],
            "importance": [item.importance for item in items],
            "ttls": [item.ttl_seconds for item in items],
            "occurred": [item.occurred_at for item in items],
        },
    )
    params = {"user_id": user_id, "ids": list(replaced), "hashes": hashes, "request_id": request_id}
    repended = await fetch_all(
        conn,
        class_row(Job),
        """
        UPDATE embed_state e
        SET content_hash = a.hash, status = 'pending', attempts = 0, last_error = NULL,
            claimed_until = NULL, queued_at = now(), updated_at = now(),
            pending_since = now(), request_id = %(request_id)s
        FROM unnest(%(ids)s::uuid[], %(hashes)s::bytea[]) AS a(id, hash)
        WHERE e.user_id = %(user_id)s AND e.item_id = a.id AND e.content_hash <> a.hash
        RETURNING e.space, e.user_id, e.item_id
        """,
        params,
    )
    if not space.external:
        return repended
    rows: list[tuple[UUID | None, bytes, np.ndarray]] = [
        (memory_id, digest, item.vector)
        for memory_id, digest, item in zip(replaced, hashes, items, strict=True)
    ]
    await store_client_vectors(conn, user_id, space, rows)
    await conn.execute(
        """
        UPDATE embed_state
        SET status = 'ready', attempts = 0, last_error = NULL, claimed_until = NULL,
            updated_at = now()
        WHERE user_id = %(user_id)s AND item_id = ANY(%(ids)s) AND space = %(space)s
        """,
        params | {"space": space.name},
    )
    return [job for job in repended if job.space != space.name]


class _Known(msgspec.Struct):
    # (id, content hash) of the memories the batch may be writing again
    by_id: dict[UUID, tuple[UUID, bytes]]  # by the ids of the batch
    by_content: dict[tuple[str | None, bytes], tuple[UUID, bytes]]  # by (session, hash), live
    expired: set[UUID]  # ids of the batch whose memories expired (the sweep deletes them)
    spaces: dict[UUID, str]  # the space of each memory the batch names by id


class _Stored(NamedTuple):
    id: UUID
    session_id: str | None
    content_hash: bytes
    live: bool = True
    space: str = ""


async def _known(
    conn: AsyncConnection, user_id: str, items: list[NewMemory], hashes: list[bytes]
) -> _Known:
    by_id = await fetch_all(
        conn,
        class_row(_Stored),
        f"SELECT m.id, m.session_id, m.content_hash, {LIVE_MEMORY} AS live, m.space "
        "FROM memories m "
        "WHERE m.user_id = %s AND m.id = ANY(%s)",
        [user_id, [item.id for item in items if item.id is not None]],
    )
    by_content = await fetch_all(
        conn,
        class_row(_Stored),
        "SELECT m.id, m.session_id, m.content_hash FROM memories m "
        f"WHERE m.user_id = %s AND m.content_hash = ANY(%s) AND {LIVE_MEMORY} "
        "ORDER BY m.created_at DESC, m.id DESC",
        [user_id, hashes],
    )
    return _Known(
        by_id={row.id: (row.id, row.content_hash) for row in by_id},
        # the oldest wins: later rows overwrite earlier ones in this newest-first order
        by_content={
            (row.session_id, row.content_hash): (row.id, row.content_hash) for row in by_content
        },
        expired={row.id for row in by_id if not row.live},
        spaces={row.id: row.space for row in by_id},
    )


async def _insert(
    conn: AsyncConnection,
    user_id: str,
    space: Space,
    fresh: list[tuple[NewMemory, bytes]],
    request_id: str | None,
) -> list[Job]:
    spaces = [space.name, *(s for s in await fills.fill_spaces(conn) if s != space.name)]
    jobs = await fetch_all(
        conn,
        class_row(Job),
        """
        WITH created AS (
            INSERT INTO memories (user_id, id, content, metadata, session_id, importance,
                                  space, content_hash, expires_at, occurred_at)
            SELECT %(user_id)s, b.id, b.content, b.metadata, b.session_id, b.importance,
                   %(space)s, b.hash, now() + make_interval(secs => b.ttl),
                   coalesce(b.occurred_at, now())
            FROM unnest(%(ids)s::uuid[], %(contents)b::text[], %(metadata)b::jsonb[],
                        %(sessions)s::text[], %(importance)s::float8[], %(hashes)s::bytea[],
                        %(ttls)s::float8[], %(occurred)s::timestamptz[])
                 AS b(id, content, metadata, session_id, importance, hash, ttl, occurred_at)
            RETURNING user_id, id, content_hash
        )
        INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, request_id, status)
        SELECT c.user_id, c.id, s.space, 'memory', c.content_hash, %(request_id)s,
               CASE WHEN s.space = %(ready_in)s THEN 'ready' ELSE 'pending' END
        FROM created c CROSS JOIN unnest(%(spaces)s::text[]) AS s(space)
        RETURNING space, user_id, item_id
        """,
        {
            "user_id": user_id,
            "space": space.name,
            "spaces": spaces,
            "ready_in": space.name if space.external else None,
            "request_id": request_id,
            "ids": [item.id for item, _ in fresh],
            "contents": [item.content for item, _ in fresh],
            "metadata": [Jsonb(item.metadata) for item, _ in fresh],
            "sessions": [item.session_id for item, _ in fresh],
            "importance": [item.importance for item, _ in fresh],
            "hashes": [digest for _, digest in fresh],
            "ttls": [item.ttl_seconds for item, _ in fresh],
            "occurred": [item.occurred_at for item, _ in fresh],
        },
    )
    if not space.external:
        return jobs
    await store_client_vectors(
        conn, user_id, space, [(item.id, digest, item.vector) for item, digest in fresh]
    )
    return [job for job in jobs if job.space != space.name]
