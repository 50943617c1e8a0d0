"""A user's data as NDJSON: the export format (version 1) and the export itself.

One JSON object a line, each with a ``type``: a ``header`` first (format, version, the user,
when, and the embedding spaces with their length and model), then ``session``, ``message``,
``memory``, ``batch``, ``document`` (each followed by the chunks of its live generation),
``chunk``, ``vector`` (one per item and space, in the space's own precision), and an ``end``
line with the count of each type, so a truncated file is never taken for a whole one.
Lines carry no user id: the header names the user they were exported from.

The export reads one snapshot (a ``REPEATABLE READ`` transaction) through server-side
cursors, so a user of any size streams in constant memory. ``models/transfer/importer.py`` reads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql

from models.embedding.spaces import Space, Storage
from models.types import ItemType, Status

FORMAT: Literal["engram.export"] = "engram.export"
VERSION = 1
MEDIA_TYPE = "application/x-ndjson"

Time = Annotated[datetime, msgspec.Meta(tz=True)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]
SpaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Role = Literal["user", "assistant", "system"]
Importance = Annotated[float, msgspec.Meta(ge=0, le=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class _Line(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """A line of an export; its ``type`` is the struct's tag."""


class SpaceInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An embedding space as the exporting server had it: vectors are usable elsewhere only
    in a space of the same name, length and model."""

    name: SpaceName
    dims: Annotated[int, msgspec.Meta(ge=1, le=16_000)]
    provider: str
    model: str
    storage: Storage = "vector"


class EmbeddingState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Status
    error: str | None = None


class Header(_Line, frozen=True, kw_only=True, tag="header"):
    format: Literal["engram.export"]
    version: int
    user_id: Name
    exported_at: Time
    spaces: list[SpaceInfo]


class SessionLine(_Line, frozen=True, kw_only=True, tag="session"):
    id: Name
    title: str | None = None
    metadata: dict[str, Any] = {}
    created_at: Time | None = None
    updated_at: Time | None = None


class MessageLine(_Line, frozen=True, kw_only=True, tag="message"):
    id: UUID
    session_id: Name
    seq: Annotated[int, msgspec.Meta(ge=1)]
    role: Role
    content: str
    memory_id: UUID | None = None
    created_at: Time | None = None


class MemoryLine(_Line, frozen=True, kw_only=True, tag="memory"):
    id: UUID
    content: str
    metadata: dict[str, Any] = {}
    session_id: Name | None = None
    importance: Importance | None = None
    space: SpaceName  # where it was written: its status is its state there
    created_at: Time | None = None
    updated_at: Time | None = None
    expires_at: Time | None = None
    embeddings: dict[SpaceName, EmbeddingState] = {}  # its state in each space


class BatchLine(_Line, frozen=True, kw_only=True, tag="batch"):
    id: UUID
    created_at: Time | None = None


class DocumentLine(_Line, frozen=True, kw_only=True, tag="document"):
    id: UUID
    collection: Name = "default"
    title: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    source: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    metadata: dict[str, Any] = {}
    space: SpaceName
    content_sha256: Sha256  # of the whole text, which is not kept: only its chunks are
    generation: Annotated[int, msgspec.Meta(ge=1)] = 1
    batch_id: UUID
    created_at: Time | None = None
    updated_at: Time | None = None


class ChunkLine(_Line, frozen=True, kw_only=True, tag="chunk"):
    id: UUID
    document_id: UUID
    chunk_index: Count
    content: str
    tokens: Count
    created_at: Time | None = None
    embeddings: dict[SpaceName, EmbeddingState] = {}


class VectorLine(_Line, frozen=True, kw_only=True, tag="vector"):
    item_id: UUID
    kind: ItemType
    space: SpaceName
    content_sha256: Sha256  # of the content the vector was made from
    embedding: msgspec.Raw  # a JSON array of numbers, kept as written (see the importer)


class End(_Line, frozen=True, kw_only=True, tag="end"):
    counts: dict[str, Count]


Line = (
    Header
    | SessionLine
    | MessageLine
    | MemoryLine
    | BatchLine
    | DocumentLine
    | ChunkLine
    | VectorLine
    | End
)
# the order of an export (a document's chunks follow it)
LINE_TYPES = ("session", "message", "memory", "batch", "document", "chunk", "vector")

_encoder = msgspec.json.Encoder()
FETCH_ROWS = 500  # rows a server-side cursor fetches at a time

# An item's state in every space it has a job in, as {space: {status, error}}.
_STATES = """
    coalesce((SELECT jsonb_object_agg(e.space, jsonb_build_object('status', e.status,
                                                                  'error', e.last_error))
              FROM embed_state e WHERE e.user_id = {alias}.user_id AND e.item_id = {alias}.id),
             '{{}}'::jsonb)
"""
_LIVE_MEMORY = "(m.expires_at IS NULL OR m.expires_at > now())"


def line_type(line: _Line) -> str:
    """The ``type`` of a line."""
    return str(type(line).__struct_config__.tag)


def encode(line: _Line) -> bytes:
    return _encoder.encode(line) + b"\n"


def space_info(space: Space) -> SpaceInfo:
    return SpaceInfo(
        name=space.name,
        dims=space.dims,
        provider=space.provider,
        model=space.model,
        storage=space.storage,
    )


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
        FROM memories m WHERE m.user_id = %s AND {_LIVE_MEMORY} ORDER BY m.id
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
                      AND m.content_hash = v.content_hash AND {_LIVE_MEMORY}))
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
