"""Chunks: each document's generations of chunks, made, dropped, and promoted to live.

A document's live chunks are those of its ``generation``. New content makes a
``pending_generation`` of chunks, embedded while the old ones stay searchable; ``promote``
swaps them in the transaction that stores the last chunk's vector.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, scalar_row

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import Space
from models.ingest.chunking import Chunk
from models.jobs.messages import Job, Key, Lane
from models.store.items import content_hash, delete_vectors

# The chunks being worked on: the pending generation while there is one, else the live one.
WORKING = "coalesce(d.pending_generation, d.generation)"


async def add_chunks(
    conn: AsyncConnection,
    user_id: str,
    doc_id: UUID,
    generation: int,
    chunks: list[Chunk],
    spaces: list[str],
    request_id: str | None,
    *,
    lane: Lane,
) -> list[Job]:
    """Insert a generation of a document's chunks, each with a job in every space."""
    return await fetch_all(
        conn,
        class_row(Job),
        """
        WITH created AS (
            INSERT INTO chunks (user_id, id, document_id, generation, chunk_index, content,
                                content_hash, tokens)
            SELECT %(user)s, gen_random_uuid(), %(doc)s, %(generation)s, c.i, c.content,
                   c.hash, c.tokens
            FROM unnest(%(indexes)s::int[], %(contents)b::text[], %(hashes)s::bytea[],
                        %(tokens)s::int[]) AS c(i, content, hash, tokens)
            RETURNING user_id, id, content_hash
        )
        INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, request_id, lane)
        SELECT c.user_id, c.id, s.space, 'chunk', c.content_hash, %(request_id)s, %(lane)s
        FROM created c CROSS JOIN unnest(%(spaces)s::text[]) AS s(space)
        RETURNING space, user_id, item_id
        """,
        {
            "user": user_id,
            "doc": doc_id,
            "generation": generation,
            "indexes": [c.index for c in chunks],
            "contents": [c.content for c in chunks],
            "hashes": [content_hash(c.content) for c in chunks],
            "tokens": [c.tokens for c in chunks],
            "spaces": spaces,
            "request_id": request_id,
            "lane": lane,
        },
    )


async def drop_chunks(
    conn: AsyncConnection, user_id: str, doc_id: UUID, condition: str, params: list[Any]
) -> None:
    """Delete chunks of a document (those matching ``condition``), their jobs and vectors."""
    jobs = await fetch_all(
        conn,
        class_row(Job),
        sql.SQL(
            """
            WITH gone AS (
                DELETE FROM chunks WHERE user_id = %s AND document_id = %s AND {}
                RETURNING user_id, id
            )
            DELETE FROM embed_state e USING gone
            WHERE e.user_id = gone.user_id AND e.item_id = gone.id
            RETURNING e.space, e.user_id, e.item_id
            """
        ).format(sql.SQL(condition)),
        [user_id, doc_id, *params],
    )
    await delete_vectors(conn, jobs)


async def promote(conn: AsyncConnection, space: Space, chunk_keys: list[Key]) -> int:
    """Make pending generations live whose chunks are all ready; return how many.

    Runs in the transaction that stored the chunks' vectors. The documents are locked (in
    key order) before their chunks are checked, so of two workers storing a document's last
    chunks at once, the second sees the first's and promotes.
    """
    if not chunk_keys:
        return 0
    candidates = await fetch_all(
        conn,
        class_row(Key),
        """
        SELECT d.user_id, d.id AS item_id FROM documents d
        WHERE (d.user_id, d.id) IN (
            SELECT k.user_id, k.document_id
            FROM chunks k JOIN unnest(%s::text[], %s::uuid[]) AS w(user_id, id)
              ON k.user_id = w.user_id AND k.id = w.id
        )
          AND d.pending_generation IS NOT NULL AND d.space = %s
        ORDER BY d.user_id, d.id
        FOR UPDATE
        """,
        [[k.user_id for k in chunk_keys], [k.item_id for k in chunk_keys], space.name],
    )
    promoted = 0
    for user_id, doc_id in candidates:
        generation = await fetch_one(
            conn,
            scalar_row,
            """
            UPDATE documents d
            SET generation = d.pending_generation, content_hash = d.pending_hash,
                pending_generation = NULL, pending_hash = NULL, updated_at = now()
            WHERE d.user_id = %(user)s AND d.id = %(id)s AND d.pending_generation IS NOT NULL
              AND NOT EXISTS (
                SELECT 1 FROM chunks k
                JOIN embed_state e ON e.user_id = k.user_id AND e.item_id = k.id
                                  AND e.space = d.space
                WHERE k.user_id = d.user_id AND k.document_id = d.id
                  AND k.generation = d.pending_generation AND e.status <> 'ready')
            RETURNING d.generation
            """,
            {"user": user_id, "id": doc_id},
        )
        if generation is not None:
            await drop_chunks(conn, user_id, doc_id, "generation < %s", [generation])
            promoted += 1
    return promoted
