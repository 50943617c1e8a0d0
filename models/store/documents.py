"""The documents repository: batches of documents, their chunks, and atomic replacement.

A document is split into chunks (``models/ingest/chunking.py``) before it reaches here; each
chunk is an item with an embedding job, like a memory, and new content becomes a new
generation of chunks (``chunks.py``). A document's status derives from the chunks of the
generation being worked on.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from uuid import UUID, uuid4

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row, scalar_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import Space
from models.errors import NotFound
from models.ingest.chunking import Chunk
from models.jobs import fills
from models.jobs.messages import Job, Lane
from models.store import chunks
from models.store.cursors import decode_newest_first, newest_first_page
from models.store.items import lock_writes
from models.types import Batch as Batch
from models.types import BatchCounts as BatchCounts
from models.types import ChunkOut as ChunkOut
from models.types import Document as Document
from models.types import Status


class NewDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A validated document, already split into chunks."""

    id: UUID | None
    title: str | None
    source: str | None
    metadata: dict[str, Any]
    content_hash: bytes
    chunks: list[Chunk]


class WrittenDocuments(msgspec.Struct, frozen=True, kw_only=True):
    batch_id: UUID
    documents: list[Document]
    jobs: list[Job]


# The chunks being worked on: the pending generation while there is one, else the live one.
_DOCUMENT = f"""
    SELECT d.id, d.user_id, d.title, d.source, d.metadata, d.collection,
           CASE WHEN s.failed > 0 THEN 'failed' WHEN s.pending > 0 THEN 'pending'
                ELSE 'ready' END AS status,
           s.error, s.chunks AS chunk_count, d.space, d.batch_id,
           encode(coalesce(d.pending_hash, d.content_hash), 'hex') AS content_sha256,
           d.created_at, d.updated_at
    FROM documents d
    CROSS JOIN LATERAL (
        SELECT count(*) AS chunks,
               count(*) FILTER (WHERE e.status = 'pending') AS pending,
               count(*) FILTER (WHERE e.status = 'failed') AS failed,
               min(e.last_error) FILTER (WHERE e.status = 'failed') AS error
        FROM chunks k
        JOIN embed_state e ON e.user_id = k.user_id AND e.item_id = k.id AND e.space = d.space
        WHERE k.user_id = d.user_id AND k.document_id = d.id AND k.generation = {chunks.WORKING}
    ) s
"""


async def write_documents(
    conn: AsyncConnection,
    user_id: str,
    space: Space,
    collection: str,
    items: list[NewDocument],
    *,
    request_id: str | None = None,
    lane: Lane = "interactive",
) -> WrittenDocuments:
    """Write a batch: new documents, replacements, and no-ops for content already there.

    The same content in the same collection (by id, or without an id by content) embeds
    nothing again. New content for a known id starts a replacement. Its chunks' jobs go
    to ``lane``.
    """
    batch_id = uuid4()
    async with conn.transaction():
        await lock_writes(conn, user_id, "documents")
        await conn.execute(
            "INSERT INTO document_batches (user_id, id) VALUES (%s, %s)", [user_id, batch_id]
        )
        known = await _known(conn, user_id, collection, items)
        spaces = [space.name, *(s for s in await fills.fill_spaces(conn) if s != space.name)]
        answer: list[UUID] = []
        created: list[Job] = []
        for item in items:
            existing = known.get(item.id) if item.id else known.get(item.content_hash)
            if existing is None:
                doc_id = item.id or uuid4()
                await _insert(conn, user_id, doc_id, space, collection, batch_id, item)
                created += await chunks.add_chunks(
                    conn, user_id, doc_id, 1, item.chunks, spaces, request_id, lane=lane
                )
                known[doc_id] = known[item.content_hash] = _Stored(
                    id=doc_id,
                    collection=collection,
                    content_hash=item.content_hash,
                    pending_hash=None,
                    generation=1,
                    pending_generation=None,
                )
            else:
                doc_id = existing.id
                created += await _update(
                    conn, user_id, existing, collection, batch_id, item, spaces, request_id, lane
                )
            answer.append(doc_id)
        found = {d.id: d for d in await get_documents(conn, user_id, answer)}
    return WrittenDocuments(batch_id=batch_id, documents=[found[i] for i in answer], jobs=created)


class _Stored(msgspec.Struct, kw_only=True):
    """A document as a batch finds it, changed as the batch writes it."""

    id: UUID
    collection: str
    content_hash: bytes
    pending_hash: bytes | None
    generation: int
    pending_generation: int | None


async def _known(
    conn: AsyncConnection, user_id: str, collection: str, items: list[NewDocument]
) -> dict[UUID | bytes, _Stored]:
    """Existing documents by id, and (in this collection) by current content."""
    rows = await fetch_all(
        conn,
        class_row(_Stored),
        """
        SELECT id, collection, content_hash, pending_hash, generation, pending_generation
        FROM documents
        WHERE user_id = %(user)s
          AND (id = ANY(%(ids)s)
               OR (collection = %(collection)s AND content_hash = ANY(%(hashes)s)))
        """,
        {
            "user": user_id,
            "ids": [i.id for i in items if i.id],
            "collection": collection,
            "hashes": [i.content_hash for i in items],
        },
    )
    known: dict[UUID | bytes, _Stored] = {}
    for doc in rows:
        known[doc.id] = doc
        if doc.collection == collection:
            known.setdefault(doc.content_hash, doc)
    return known


async def _insert(
    conn: AsyncConnection,
    user_id: str,
    doc_id: UUID,
    space: Space,
    collection: str,
    batch_id: UUID,
    item: NewDocument,
) -> None:
    await conn.execute(
        """
        INSERT INTO documents (user_id, id, collection, title, source, metadata, space,
                               content_hash, batch_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        [
            user_id,
            doc_id,
            collection,
            item.title,
            item.source,
            Jsonb(item.metadata),
            space.name,
            item.content_hash,
            batch_id,
        ],
    )


async def _update(
    conn: AsyncConnection,
    user_id: str,
    existing: _Stored,
    collection: str,
    batch_id: UUID,
    item: NewDocument,
    spaces: list[str],
    request_id: str | None,
    lane: Lane,
) -> list[Job]:
    """Same content: only the descriptive fields change. New content: a new generation."""
    doc_id = existing.id
    pending = existing.pending_generation
    same_as_live = item.content_hash == existing.content_hash
    same_as_pending = pending is not None and item.content_hash == existing.pending_hash
    created: list[Job] = []
    if pending is not None and not same_as_pending:
        # a replacement in flight is superseded (or cancelled, back to the live content)
        await chunks.drop_chunks(conn, user_id, doc_id, "generation = %s", [pending])
        pending = None
    if not same_as_live and not same_as_pending:
        pending = max(existing.generation, existing.pending_generation or 0) + 1
        created = await chunks.add_chunks(
            conn, user_id, doc_id, pending, item.chunks, spaces, request_id, lane=lane
        )
    await conn.execute(
        """
        UPDATE documents
        SET collection = %(collection)s, title = %(title)s, source = %(source)s,
            metadata = %(metadata)s, batch_id = %(batch)s, updated_at = now(),
            pending_generation = %(pending)s,
            pending_hash = CASE WHEN %(pending)s::int IS NULL THEN NULL ELSE %(hash)s END
        WHERE user_id = %(user)s AND id = %(id)s
        """,
        {
            "collection": collection,
            "title": item.title,
            "source": item.source,
            "metadata": Jsonb(item.metadata),
            "batch": batch_id,
            "pending": pending,
            "hash": item.content_hash,
            "user": user_id,
            "id": doc_id,
        },
    )
    existing.pending_generation = pending
    existing.pending_hash = None if pending is None else item.content_hash
    return created


async def get_documents(conn: AsyncConnection, user_id: str, ids: list[UUID]) -> list[Document]:
    return await fetch_all(
        conn,
        class_row(Document),
        f"{_DOCUMENT} WHERE d.user_id = %s AND d.id = ANY(%s)",
        [user_id, ids],
    )


async def get_document(conn: AsyncConnection, user_id: str, doc_id: UUID) -> Document:
    found = await get_documents(conn, user_id, [doc_id])
    if not found:
        raise NotFound(f"document {doc_id} not found")
    return found[0]


async def list_documents(
    conn: AsyncConnection,
    user_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    collection: str | None = None,
    status: Status | None = None,
    batch_id: UUID | None = None,
) -> tuple[list[Document], str | None]:
    """A page of documents, newest first, and the next page's cursor (None at the end)."""
    after = decode_newest_first(cursor)
    query = f"""
        SELECT * FROM ({_DOCUMENT}
            WHERE d.user_id = %(user)s
              AND (%(collection)s::text IS NULL OR d.collection = %(collection)s)
              AND (%(batch)s::uuid IS NULL OR d.batch_id = %(batch)s)
              AND (%(after_at)s::timestamptz IS NULL
                   OR (d.created_at, d.id) < (%(after_at)s, %(after_id)s))
        ) docs
        WHERE %(status)s::text IS NULL OR status = %(status)s
        ORDER BY created_at DESC, id DESC
        LIMIT %(limit)s
    """
    params = {
        "user": user_id,
        "collection": collection,
        "status": status,
        "batch": batch_id,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit + 1,
    }
    rows = await fetch_all(conn, class_row(Document), query, params)
    return newest_first_page(rows, limit)


async def list_chunks(conn: AsyncConnection, user_id: str, doc_id: UUID) -> list[ChunkOut]:
    """The chunks of the generation being worked on, in order."""
    await get_document(conn, user_id, doc_id)
    return await fetch_all(
        conn,
        class_row(ChunkOut),
        f"""
        SELECT k.id, k.document_id, k.chunk_index, k.content, k.tokens, e.status,
               e.last_error AS error
        FROM documents d
        JOIN chunks k ON k.user_id = d.user_id AND k.document_id = d.id
                     AND k.generation = {chunks.WORKING}
        JOIN embed_state e ON e.user_id = k.user_id AND e.item_id = k.id
                          AND e.space = d.space
        WHERE d.user_id = %s AND d.id = %s
        ORDER BY k.chunk_index
        """,
        [user_id, doc_id],
    )


async def delete_document(conn: AsyncConnection, user_id: str, doc_id: UUID) -> None:
    """Delete a document with all its chunks, jobs and vectors, at once."""
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM documents WHERE user_id = %s AND id = %s", [user_id, doc_id]
        )
        if cur.rowcount == 0:
            raise NotFound(f"document {doc_id} not found")
        await chunks.drop_chunks(conn, user_id, doc_id, "true", [])


async def get_batch(conn: AsyncConnection, user_id: str, batch_id: UUID) -> Batch:
    """A batch's documents counted by status (a document re-sent later counts there)."""
    created_at = await fetch_one(
        conn,
        scalar_row,
        "SELECT created_at FROM document_batches WHERE user_id = %s AND id = %s",
        [user_id, batch_id],
    )
    if created_at is None:
        raise NotFound(f"batch {batch_id} not found")
    rows = await fetch_all(
        conn,
        class_row(_ByStatus),
        f"SELECT status, count(*) AS n "
        f"FROM ({_DOCUMENT} WHERE d.user_id = %s AND d.batch_id = %s) b GROUP BY status",
        [user_id, batch_id],
    )
    by_status = {row.status: row.n for row in rows}
    counts = BatchCounts(
        pending=by_status.get("pending", 0),
        ready=by_status.get("ready", 0),
        failed=by_status.get("failed", 0),
        total=sum(by_status.values()),
    )
    status = "in_progress" if counts.pending else "failed" if counts.failed else "completed"
    return Batch(id=batch_id, status=status, counts=counts, created_at=created_at)


class _ByStatus(NamedTuple):
    status: str
    n: int
