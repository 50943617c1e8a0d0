"""Exporting a user: every line of the export format (``format.py``), streamed.

The export reads one snapshot (a ``REPEATABLE READ`` transaction) through server-side
cursors, so a user of any size streams in constant memory. ``importer.py`` reads it back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql

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

FETCH_ROWS = 500  # rows a server-side cursor fetches at a time

# An item's state in every space it has a job in, as {space: {status, error}}.
_STATES = """
    coalesce((SELECT jsonb_object_agg(e.space, jsonb_build_object('status', e.status,
                                                                  'error', e.last_error))
              FROM embed_state e WHERE e.user_id = {alias}.user_id AND e.item_id = {alias}.id),
             '{{}}'::jsonb)
"""


async def begin_snapshot(conn: AsyncConnection) -> None:
    """Make the open transaction read one consistent snapshot (the first statement in it)."""
    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


async def export_lines(
    conn: AsyncConnection, user_id: str, spaces: list[Space]
) -> AsyncIterator[bytes]:
    """The user's export, line by line; run in a ``begin_snapshot`` transaction.

    Only what a user can see is exported: live memories (not expired), documents with the
    chunks of their live generation (a replacement still being embedded is left out), and
    the vectors that are current for that content in each configured space.
    """
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    yield encode(
        Header(
            format=FORMAT,
            version=VERSION,
            user_id=user_id,
            exported_at=row[0],
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
    conn: AsyncConnection, name: str, query: str | sql.Composed, params: list[Any]
) -> AsyncIterator[tuple[Any, ...]]:
    """Rows of ``query`` through a server-side cursor, ``FETCH_ROWS`` at a time."""
    async with conn.cursor(name=f"export_{name}") as cur:
        cur.itersize = FETCH_ROWS
        await cur.execute(query, params)
        async for row in cur:
            yield row


async def _sessions(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    async for r in _rows(
        conn,
        "sessions",
        "SELECT id, title, metadata, created_at, updated_at FROM sessions "
        "WHERE user_id = %s ORDER BY id",
        [user_id],
    ):
        yield SessionLine(id=r[0], title=r[1], metadata=r[2], created_at=r[3], updated_at=r[4])


async def _messages(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    async for r in _rows(
        conn,
        "messages",
        "SELECT id, session_id, seq, role, content, memory_id, created_at FROM messages "
        "WHERE user_id = %s ORDER BY session_id, seq",
        [user_id],
    ):
        yield MessageLine(
            id=r[0],
            session_id=r[1],
            seq=r[2],
            role=r[3],
            content=r[4],
            memory_id=r[5],
            created_at=r[6],
        )


async def _memories(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    query = f"""
        SELECT m.id, m.content, m.metadata, m.session_id, m.importance, m.space, m.created_at,
               m.updated_at, m.expires_at, {_STATES.format(alias="m")}
        FROM memories m WHERE m.user_id = %s AND {LIVE_MEMORY} ORDER BY m.id
    """
    async for r in _rows(conn, "memories", query, [user_id]):
        yield MemoryLine(
            id=r[0],
            content=r[1],
            metadata=r[2],
            session_id=r[3],
            importance=r[4],
            space=r[5],
            created_at=r[6],
            updated_at=r[7],
            expires_at=r[8],
            embeddings=_states(r[9]),
        )


async def _batches(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    async for r in _rows(
        conn,
        "batches",
        "SELECT id, created_at FROM document_batches WHERE user_id = %s ORDER BY id",
        [user_id],
    ):
        yield BatchLine(id=r[0], created_at=r[1])


async def _documents(conn: AsyncConnection, user_id: str) -> AsyncIterator[_Line]:
    """Each document, then the chunks of its live generation in order."""
    query = f"""
        SELECT d.id, d.collection, d.title, d.source, d.metadata, d.space,
               encode(d.content_hash, 'hex'), d.generation, d.batch_id, d.created_at,
               d.updated_at,
               k.id, k.chunk_index, k.content, k.tokens, k.created_at, {_STATES.format(alias="k")}
        FROM documents d
        LEFT JOIN chunks k ON k.user_id = d.user_id AND k.document_id = d.id
                          AND k.generation = d.generation
        WHERE d.user_id = %s
        ORDER BY d.id, k.chunk_index
    """
    current: UUID | None = None
    async for r in _rows(conn, "documents", query, [user_id]):
        if r[0] != current:
            current = r[0]
            yield DocumentLine(
                id=r[0],
                collection=r[1],
                title=r[2],
                source=r[3],
                metadata=r[4],
                space=r[5],
                content_sha256=r[6],
                generation=r[7],
                batch_id=r[8],
                created_at=r[9],
                updated_at=r[10],
            )
        if r[11] is not None:
            yield ChunkLine(
                id=r[11],
                document_id=r[0],
                chunk_index=r[12],
                content=r[13],
                tokens=r[14],
                created_at=r[15],
                embeddings=_states(r[16]),
            )


async def _vectors(
    conn: AsyncConnection, user_id: str, spaces: list[Space]
) -> AsyncIterator[_Line]:
    """The current vectors of exported items, space by space, as the database prints them.

    pgvector prints each component in the shortest form that reads back to the same float,
    so the numbers round-trip exactly (``halfvec`` ones too, at their own precision).
    """
    for space in spaces:
        cur = await conn.execute("SELECT to_regclass(%s)", [space.table])
        found = await cur.fetchone()
        if found is None or found[0] is None:
            continue
        query = sql.SQL(
            f"""
            SELECT v.item_id, v.kind, encode(v.content_hash, 'hex'), v.embedding::text
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
        async for r in _rows(conn, f"vectors_{space.table}", query, [user_id]):
            yield VectorLine(
                item_id=r[0],
                kind=r[1],
                space=space.name,
                content_sha256=r[2],
                embedding=msgspec.Raw(r[3].encode()),
            )


def _states(states: dict[str, dict[str, Any]]) -> dict[str, EmbeddingState]:
    return {
        space: EmbeddingState(status=s["status"], error=s["error"])
        for space, s in sorted(states.items())
    }
