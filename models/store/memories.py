"""The memories repository: plain async functions that take a connection and hold the SQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
import numpy as np
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, scalar_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import Space, SpaceRegistry
from models.errors import InvalidInput, NotFound
from models.jobs.messages import Job, Key
from models.search.filters import FilterCompiler
from models.store.cursors import decode_newest_first, newest_first_page
from models.store.items import (
    LIVE_MEMORY,
    content_hash,
    delete_vectors,
)
from models.types import Memory, MemoryPatch, Status
from models.validation import client_vector

# A memory's status is its embedding state in its own space (``memories.space``).
COLUMNS = (
    "m.id, m.user_id, m.content, m.metadata, m.session_id, m.importance, e.status, "
    "e.last_error AS error, m.space, m.occurred_at, m.created_at, m.updated_at, m.expires_at"
)
FROM = """
    FROM memories m
    JOIN embed_state e ON e.user_id = m.user_id AND e.item_id = m.id AND e.space = m.space
"""


class Written(msgspec.Struct, frozen=True, kw_only=True):
    """Memories as written, and the embedding jobs the write made pending."""

    memories: list[Memory]
    jobs: list[Job]
    # per memory: it was already stored (same content), so nothing new was written
    duplicate: list[bool] = msgspec.field(default_factory=list)
    deleted: int = 0  # memories the write deleted (``delete``)


async def store_client_vectors(
    conn: AsyncConnection,
    user_id: str,
    space: Space,
    rows: list[tuple[UUID | None, bytes, np.ndarray]],
) -> None:
    """Store vectors the client sent for memories of an external space: (id, content
    hash, unit vector). A vector an item already has is replaced."""
    await conn.execute(
        sql.SQL(
            """
            INSERT INTO {table} (user_id, item_id, kind, content_hash, embedding)
            SELECT %(user)s, t.id, 'memory', t.hash, t.embedding::{storage}
            FROM unnest(%(ids)s::uuid[], %(hashes)s::bytea[], %(embeddings)s::text[])
                 AS t(id, hash, embedding)
            ON CONFLICT (user_id, item_id)
            DO UPDATE SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash,
                          kind = EXCLUDED.kind, indexed = false
            """
        ).format(table=sql.Identifier(space.table), storage=sql.SQL(space.storage)),
        {
            "user": user_id,
            "ids": [row[0] for row in rows],
            "hashes": [row[1] for row in rows],
            "embeddings": [vector_text(row[2]) for row in rows],
        },
    )


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form of a float32 vector; each number reads back as the same float32."""
    return "[" + ",".join(repr(float(x)) for x in vector.astype(np.float32).tolist()) + "]"


async def get_memories(conn: AsyncConnection, user_id: str, ids: list[UUID]) -> list[Memory]:
    return await fetch_all(
        conn,
        class_row(Memory),
        f"SELECT {COLUMNS} {FROM} WHERE m.user_id = %s AND m.id = ANY(%s) AND {LIVE_MEMORY}",
        [user_id, ids],
    )


async def get_memory(conn: AsyncConnection, user_id: str, memory_id: UUID) -> Memory:
    found = await get_memories(conn, user_id, [memory_id])
    if not found:
        raise NotFound(f"memory {memory_id} not found")
    return found[0]


async def list_memories(
    conn: AsyncConnection,
    user_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    session_id: str | None = None,
    status: Status | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[list[Memory], str | None]:
    """A page of memories, newest first, and the cursor of the next page (None at the end);
    ``metadata`` is a filter of search's language (``models.search.filters``)."""
    after = decode_newest_first(cursor)
    matching = FilterCompiler("m.metadata")
    condition = matching.compile(metadata) if metadata is not None else sql.SQL("TRUE")
    query = sql.SQL(
        f"SELECT {COLUMNS} {FROM} WHERE m.user_id = %(user_id)s AND {LIVE_MEMORY}"
        " AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)"
        " AND (%(status)s::text IS NULL OR e.status = %(status)s)"
        " AND {condition}"
        " AND (%(after_at)s::timestamptz IS NULL"
        "      OR (m.created_at, m.id) < (%(after_at)s, %(after_id)s))"
        " ORDER BY m.created_at DESC, m.id DESC LIMIT %(limit)s"
    ).format(condition=condition)
    params = matching.params | {
        "user_id": user_id,
        "session_id": session_id,
        "status": status,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit + 1,
    }
    rows = await fetch_all(conn, class_row(Memory), query, params)
    return newest_first_page(rows, limit)


async def update_memory(
    conn: AsyncConnection,
    user_id: str,
    memory_id: UUID,
    patch: MemoryPatch,
    *,
    spaces: SpaceRegistry,
    request_id: str | None = None,
) -> Written:
    """Apply a patch; new content sends the memory back to ``pending`` in every space, but
    its own space when that is external: there the patch's vector is stored at once."""
    changes: list[sql.Composable] = [sql.SQL("updated_at = now()")]
    params: dict[str, Any] = {"user_id": user_id, "id": memory_id, "request_id": request_id}
    if patch.content is not msgspec.UNSET:
        params |= {"content": patch.content, "hash": content_hash(patch.content)}
        changes.append(sql.SQL("content = %(content)s, content_hash = %(hash)s"))
    if patch.metadata is not msgspec.UNSET:
        params["metadata"] = Jsonb(patch.metadata)
        changes.append(sql.SQL("metadata = %(metadata)s"))
    if patch.importance is not msgspec.UNSET:
        params["importance"] = patch.importance
        changes.append(sql.SQL("importance = %(importance)s"))
    if patch.ttl_seconds is not msgspec.UNSET:
        params["ttl"] = patch.ttl_seconds
        changes.append(sql.SQL("expires_at = now() + make_interval(secs => %(ttl)s::float8)"))
    if patch.occurred_at is not msgspec.UNSET:
        params["occurred_at"] = patch.occurred_at
        changes.append(sql.SQL("occurred_at = %(occurred_at)s"))
    query = sql.SQL(
        "UPDATE memories m SET {changes} WHERE user_id = %(user_id)s AND id = %(id)s AND {live}"
    ).format(changes=sql.SQL(", ").join(changes), live=sql.SQL(LIVE_MEMORY))
    async with conn.transaction():
        space = await _space_of(conn, user_id, memory_id, spaces)
        vector = patched_vector(space, patch)
        cur = await conn.execute(query, params)
        if cur.rowcount == 0:
            raise NotFound(f"memory {memory_id} not found")
        repended: list[Job] = []
        if vector is not None:
            # the client's vector of the new content: ready at once, the worker never sees it
            await store_client_vectors(conn, user_id, space, [(memory_id, params["hash"], vector)])
            await conn.execute(
                """
                UPDATE embed_state
                SET content_hash = %(hash)s, status = 'ready', attempts = 0, last_error = NULL,
                    claimed_until = NULL, updated_at = now(), request_id = %(request_id)s
                WHERE user_id = %(user_id)s AND item_id = %(id)s AND space = %(space)s
                """,
                params | {"space": space.name},
            )
        if "hash" in params:
            # Only a real change of content re-embeds; the same text keeps its vectors.
            repended = await fetch_all(
                conn,
                class_row(Job),
                """
                UPDATE embed_state
                SET content_hash = %(hash)s, status = 'pending', attempts = 0,
                    last_error = NULL, claimed_until = NULL, queued_at = now(),
                    updated_at = now(), pending_since = now(), request_id = %(request_id)s
                WHERE user_id = %(user_id)s AND item_id = %(id)s AND content_hash <> %(hash)s
                RETURNING space, user_id, item_id
                """,
                params,
            )
        memory = await get_memory(conn, user_id, memory_id)
    return Written(memories=[memory], jobs=repended)


async def _space_of(
    conn: AsyncConnection, user_id: str, memory_id: UUID, spaces: SpaceRegistry
) -> Space:
    """The space of a live memory, locked until the transaction ends (``NotFound``: none)."""
    name = await fetch_one(
        conn,
        scalar_row,
        f"SELECT m.space FROM memories m WHERE m.user_id = %s AND m.id = %s AND {LIVE_MEMORY} "
        "FOR UPDATE",
        [user_id, memory_id],
    )
    if name is None:
        raise NotFound(f"memory {memory_id} not found")
    return spaces.get(name)


def patched_vector(space: Space, patch: MemoryPatch) -> np.ndarray | None:
    """The vector a patch brings, checked against the memory's space: new content of a
    memory in an external space needs one, and only such a memory takes one."""
    if patch.vector is None:
        if space.external and patch.content is not msgspec.UNSET:
            raise InvalidInput(
                f"vector: the memory is in the external space {space.name}: "
                "new content needs its new vector"
            )
        return None
    if patch.content is msgspec.UNSET:
        raise InvalidInput("vector: send it with the new content it was made from")
    return client_vector(patch.vector, space)


async def delete_memory(conn: AsyncConnection, user_id: str, memory_id: UUID) -> None:
    """Delete a memory and its vectors in one transaction: gone from search at once."""
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM memories WHERE user_id = %s AND id = %s", [user_id, memory_id]
        )
        if cur.rowcount == 0:
            raise NotFound(f"memory {memory_id} not found")
        jobs = await fetch_all(
            conn,
            class_row(Job),
            "DELETE FROM embed_state WHERE user_id = %s AND item_id = %s "
            "RETURNING space, user_id, item_id",
            [user_id, memory_id],
        )
        await delete_vectors(conn, jobs)


async def delete_expired(conn: AsyncConnection, *, limit: int) -> int:
    """Delete up to ``limit`` expired memories of any user, with their jobs and vectors.

    Reads already hide expired memories; this reclaims their rows. Returns how many went.
    """
    return await delete_where(
        conn,
        """
        SELECT user_id, id FROM memories
        WHERE expires_at <= now()
        ORDER BY expires_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
        """,
        {"limit": limit},
    )


async def delete_session_memories(conn: AsyncConnection, user_id: str, session_id: str) -> int:
    """Delete every memory of a session, with their jobs and vectors; return how many."""
    return await delete_where(
        conn,
        "SELECT user_id, id FROM memories WHERE user_id = %(user)s AND session_id = %(session)s",
        {"user": user_id, "session": session_id},
    )


async def delete_where(conn: AsyncConnection, chosen: str, params: dict[str, Any]) -> int:
    """Delete the memories ``chosen`` selects (user_id, id), their jobs and their vectors."""
    gone = await fetch_all(
        conn,
        class_row(Key),
        f"""
        WITH chosen AS ({chosen})
        DELETE FROM memories m USING chosen
        WHERE m.user_id = chosen.user_id AND m.id = chosen.id
        RETURNING m.user_id, m.id AS item_id
        """,
        params,
    )
    jobs = await fetch_all(
        conn,
        class_row(Job),
        """
        DELETE FROM embed_state e USING unnest(%s::text[], %s::uuid[]) AS g(user_id, item_id)
        WHERE e.user_id = g.user_id AND e.item_id = g.item_id
        RETURNING e.space, e.user_id, e.item_id
        """,
        [[key.user_id for key in gone], [key.item_id for key in gone]],
    )
    await delete_vectors(conn, jobs)
    return len(gone)
