"""Exporting a user: every line of the export format (``format.py``), streamed.

The export reads one snapshot (a ``REPEATABLE READ`` transaction) through server-side
cursors, so a user of any size streams in constant memory. ``importer.py`` reads it back.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg.rows import AsyncRowFactory, class_row, kwargs_row, scalar_row

from models.db.rows import fetch_one
from models.embedding.spaces import Space
from models.store.items import LIVE_MEMORY
from models.transfer.format import (
    FORMAT,
    LINE_TYPES,
    VERSION,
    BatchLine,
    ChunkLine,
    DocumentLine,
    EmbeddingState,
    End,
    Header,
    MemoryLine,
    MessageLine,
    SessionLine,
    VectorLine,
    _Line,
    encode,
    line_type,
    space_info,
)

R = TypeVar("R")
FETCH_ROWS = 500  # rows a server-side cursor fetches at a time

# An item's state in every space it has a job in, as {space: {status, error}}.
_STATES = """
    coalesce((SELECT jsonb_object_agg(e.space, jsonb_build_object('status', e.status,
                                                                  'error', e.last_error))
              FROM embed_state e WHERE e.user_id = {alias}.user_id AND e.item_id = {alias}.id),
             '{{}}'::jsonb)
"""


async def export_lines(
    conn: AsyncConnection, user_id: str, spaces: list[Space]
) -> AsyncIterator[bytes]:
    """The user's export, line by line; run it in one snapshot (``read_snapshot``).

    Only what a user can see is exported: live memories (not expired), documents with the
    chunks of their live generation (a replacement still being embedded is left out), and
    the vectors that are current for that content in each configured space.
    """
    exported_at = await fetch_one(conn, scalar_row, "SELECT now()")
    assert exported_at is not None
    yield encode(
        Header(
            format=FORMAT,
            version=VERSION,
            user_id=user_id,
            exported_at=exported_at,
            spaces=[space_info(s) for s in spaces],
        )
    )
    counts: Counter[str] = Counter()
    for lines in (
        _sessions(conn, user_id),
        _messages(conn, user_id),
        _memories(conn, user_id),
        _batches(conn, user_id),
        _documents(conn, user_id),
        _vectors(conn, user_id, spaces),
    ):
        async for line in lines:
            counts[line_type(line)] += 1
            yield encode(line)
    yield encode(End(counts={kind: counts[kind] for kind in LINE_TYPES}))


async def _rows(
    conn: AsyncConnection,
    name: str,
    row: AsyncRowFactory[R],
    query: str | sql.Composed,
    params: list[Any],
) -> AsyncIterator[R]:
    """Rows of ``query`` through a server-side cursor, ``FETCH_ROWS`` at a time."""
    async with conn.cursor(name=f"export_{name}", row_factory=row) as cur:
        cur.itersize = FETCH_ROWS
        await cur.execute(query, params)
        async for found in cur:
            yield found


async def _sessions(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    query = (
        "SELECT id, title, metadata, started_at, created_at, updated_at FROM sessions "
        "WHERE user_id = %s ORDER BY id"
    )
    async for line in _rows(conn, "sessions", class_row(SessionLine), query, [user_id]):
        yield line


async def _messages(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    query = (
        "SELECT id, session_id, seq, role, name, content, metadata, memory_id, occurred_at, "
        "created_at FROM messages "
        "WHERE user_id = %s ORDER BY session_id, seq"
    )
    async for line in _rows(conn, "messages", class_row(MessageLine), query, [user_id]):
        yield line


async def _memories(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    query = f"""
        SELECT m.id, m.content, m.metadata, m.session_id, m.importance, m.space, m.occurred_at,
               m.created_at, m.updated_at, m.expires_at, m.text_config::text AS language,
               {_STATES.format(alias="m")} AS embeddings
        FROM memories m WHERE m.user_id = %s AND {LIVE_MEMORY} ORDER BY m.id
    """
    async for line in _rows(conn, "memories", kwargs_row(_memory_line), query, [user_id]):
        yield line


async def _batches(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    query = "SELECT id, created_at FROM document_batches WHERE user_id = %s ORDER BY id"
    async for line in _rows(conn, "batches", class_row(BatchLine), query, [user_id]):
        yield line


async def _documents(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    """Each document, then the chunks of its live generation in order."""
    query = f"""
        SELECT d.id, d.collection, d.title, d.source, d.metadata, d.space,
               encode(d.content_hash, 'hex') AS content_sha256, d.generation, d.batch_id,
               d.created_at, d.updated_at,
               k.id AS chunk_id, k.chunk_index, k.content, k.tokens,
               k.created_at AS chunk_created_at, k.text_config::text AS chunk_language,
               {_STATES.format(alias="k")} AS embeddings
        FROM documents d
        LEFT JOIN chunks k ON k.user_id = d.user_id AND k.document_id = d.id
                          AND k.generation = d.generation
        WHERE d.user_id = %s
        ORDER BY d.id, k.chunk_index
    """
    current: UUID | None = None
    async for document, chunk in _rows(
        conn, "documents", kwargs_row(_document_and_chunk), query, [user_id]
    ):
        if document.id != current:
            current = document.id
            yield document
        if chunk is not None:
            yield chunk


async def _vectors(
    conn: AsyncConnection, user_id: str, spaces: list[Space]
) -> AsyncIterator[_Line]:
    """The current vectors of exported items, space by space, as the database prints them.

    pgvector prints each component in the shortest form that reads back to the same float,
    so the numbers round-trip exactly (``halfvec`` ones too, at their own precision).
    """
    for space in spaces:
        if await fetch_one(conn, scalar_row, "SELECT to_regclass(%s)", [space.table]) is None:
            continue
        query = sql.SQL(
            f"""
            SELECT v.item_id, v.kind, encode(v.content_hash, 'hex') AS content_sha256,
                   v.embedding::text AS embedding
            FROM {{table}} v
            WHERE v.user_id = %s AND (
                (v.kind = 'memory' AND EXISTS (
                    SELECT 1 FROM memories m
                    WHERE m.user_id = v.user_id AND m.id = v.item_id
                      AND m.content_hash = v.content_hash AND {LIVE_MEMORY}))
                OR (v.kind = 'chunk' AND EXISTS (
                    SELECT 1 FROM chunks k
                    JOIN documents d ON d.user_id = k.user_id AND d.id = k.document_id
                                    AND d.generation = k.generation
                    WHERE k.user_id = v.user_id AND k.id = v.item_id
                      AND k.content_hash = v.content_hash)))
            ORDER BY v.kind DESC, v.item_id
            """
        ).format(table=sql.Identifier(space.table))
        rows = kwargs_row(functools.partial(_vector_line, space=space.name))
        async for line in _rows(conn, f"vectors_{space.table}", rows, query, [user_id]):
            yield line


def _memory_line(*, embeddings: dict[str, dict[str, Any]], **fields: Any) -> MemoryLine:
    return MemoryLine(embeddings=_states(embeddings), **fields)


def _document_and_chunk(
    *,
    chunk_id: UUID | None,
    # the chunk's columns are NULL together, when the document has no chunks
    chunk_index: Any,
    content: Any,
    tokens: Any,
    chunk_created_at: datetime | None,
    chunk_language: str | None,
    embeddings: dict[str, dict[str, Any]],
    **document: Any,
) -> tuple[DocumentLine, ChunkLine | None]:
    """A row of a document and one of its chunks (None: a document without chunks)."""
    line = DocumentLine(**document)
    if chunk_id is None:
        return line, None
    chunk = ChunkLine(
        id=chunk_id,
        document_id=line.id,
        chunk_index=chunk_index,
        content=content,
        tokens=tokens,
        created_at=chunk_created_at,
        embeddings=_states(embeddings),
        language=chunk_language,
    )
    return line, chunk


def _vector_line(*, space: str, embedding: str, **fields: Any) -> VectorLine:
    return VectorLine(space=space, embedding=msgspec.Raw(embedding.encode()), **fields)


def _states(states: dict[str, dict[str, Any]]) -> dict[str, EmbeddingState]:
    return {
        space: EmbeddingState(status=s["status"], error=s["error"])
        for space, s in sorted(states.items())
    }
