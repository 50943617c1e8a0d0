"""Importing an export (``format.py``), read and checked by ``reader.py``, in one
transaction, so an import is all or nothing: a bad line found late still changes nothing.

- Ids are kept, and a row whose id the user already has is left as it is (counted as
  ``existing``): importing the same export twice changes nothing the second time. An import
  adds what is missing; it never overwrites.
- The rows go to the user of the request, whoever the header names: an export of alice
  imported on bob's path becomes bob's (ids are per user, so both can hold the same ids).
- A vector is stored as it is, and its item is ``ready`` there without being embedded
  again, when this server has a space of the same name, length and model, and the vector
  was made from the item's content. Every other item is queued for embedding in its home
  space (the kind's default space here, when its own is not configured), like a new one.
  An item of an external space without a usable vector there is not queued (the server
  cannot embed it): it is stored ``failed``, saying so, and the answer lists it in
  ``without_vector``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

import numpy as np
from pgvector import HalfVector, Vector
from psycopg import AsyncConnection, sql
from psycopg.rows import scalar_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all
from models.embedding.spaces import Space, SpaceRegistry
from models.errors import Conflict
from models.jobs import fills
from models.jobs.messages import Job
from models.store.items import content_hash, lock_writes, named_by_the_other_type
from models.transfer.format import LINE_TYPES, MemoryLine
from models.transfer.reader import Plan, Reader, numbered_lines
from models.types import Imported as Imported
from models.types import ItemType

# an import's GIN entries gather in the pending lists (PostgreSQL's default limit), and are
# merged into the indexes once, before it commits: cheaper than a few hundred at a time
BULK_PENDING_LIST_KB = 4096
MERGED_TABLES = {"memory": "memories", "chunk": "chunks", "document": "documents"}
# memories are written in batches of this many, each while the lines after it are read
MEMORY_BATCH = 500
# reading gives the event loop a turn after this many bytes of lines: the process's other
# requests go on while a large import is read
TURN_BYTES = 64 * 1024

# an imported item of an external space without its vector: the server cannot embed it
NO_CLIENT_VECTOR = (
    "no vector: the space is external and its clients send the vectors; PATCH the memory "
    "with its content and vector"
)


async def write_import(
    conn: AsyncConnection,
    user_id: str,
    body: bytes,
    reader: Callable[[], Reader],
    *,
    spaces: SpaceRegistry,
    admit: Callable[[int], Awaitable[None]],
    request_id: str | None = None,
) -> tuple[Imported, list[Job]]:
    """Read an export (``body``, with a new ``reader()``) and write it for ``user_id`` in one
    transaction; answer what was written and the embedding jobs to wake workers for (they
    remember ``request_id``, for the logs).

    The memories are written as they are read, each batch's insert running in the database
    while the lines after it are read; the rest once every line is checked. ``admit`` is
    given the number of items the import queues for embedding before the rest is written:
    raising refuses the import (the rate limit)."""
    async with conn.transaction():
        # the locks of memory and document writes: no concurrent write can interleave
        await lock_writes(conn, user_id, "memories", "documents")
        await conn.execute(
            "SELECT set_config('gin_pending_list_limit', %s, true)", [str(BULK_PENDING_LIST_KB)]
        )
        writer = _Writer(conn, user_id, spaces, await fills.fill_spaces(conn), request_id)
        read = reader()
        await _read_writing_memories(numbered_lines(body), read, writer)
        plan = read.finish()
        await admit(plan.unembedded)
        await writer.write(plan)
        if written := [table for kind, table in MERGED_TABLES.items() if writer.imported[kind]]:
            await conn.execute("SELECT merge_pending_entries(%s)", [written])
    return writer.answer(), writer.jobs


async def _read_writing_memories(
    lines: Iterable[tuple[int, bytes]], reader: Reader, writer: _Writer
) -> None:
    """Feed every line to ``reader``, and write each batch of memories while the lines after
    it are read: the database inserts while this process reads."""
    writing: asyncio.Task[None] | None = None
    unturned = 0  # bytes read since the event loop last had a turn
    try:
        for number, line in lines:
            reader.feed(number, line)
            unturned += len(line)
            if reader.memories_waiting >= MEMORY_BATCH:
                if writing is not None:
                    await writing
                writing = asyncio.create_task(writer.insert_memories(reader.take_memories()))
            elif unturned < TURN_BYTES:
                continue
            await asyncio.sleep(0)  # a new batch's statement goes out; other requests go on
            unturned = 0
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():
            # a bad line: the batch being written ends before the transaction rolls back
            await asyncio.gather(writing, return_exceptions=True)
    await writer.insert_memories(reader.take_memories())


class _Writer:
    """One import's writes, in the order rows refer to each other."""

    def __init__(
        self,
        conn: AsyncConnection,
        user_id: str,
        spaces: SpaceRegistry,
        fill: list[str],
        request_id: str | None,
    ) -> None:
        self.conn, self.user_id, self.fill = conn, user_id, fill
        self.request_id = request_id
        self.configured = set(spaces.names())
        self.external = {space.name for space in spaces.external()}
        self.without_vector: list[UUID] = []
        self.defaults = {kind: spaces.default_for(kind).name for kind in ("memory", "document")}
        self.imported: Counter[str] = Counter()
        self.existing: Counter[str] = Counter()
        self.vectors_skipped = 0
        self.jobs: list[Job] = []
        self.staged = 0  # staging tables of vectors made so far
        self.new_memories: list[tuple[UUID, str, str]] = []  # written: id, content, home

    async def write(self, plan: Plan) -> None:
        """Everything but the memories' rows, written as they were read."""
        self.plan = plan
        await self._refuse_ids_of_the_other_type()
        await self._batches()
        new_sessions = await self._sessions()
        await self._messages(new_sessions)
        new_documents = await self._documents()
        await self._chunks(new_documents)
        await self._embeddings("memory", self.new_memories)
        self.vectors_skipped = sum(map(len, self.plan.vectors.values())) - self.imported["vector"]

    async def _refuse_ids_of_the_other_type(self) -> None:
        """A memory may not take the id of one of the user's chunks, nor a chunk a
        memory's: their jobs and vectors would be one another's."""
        plan = self.plan
        kinds: list[tuple[ItemType, list[UUID]]] = [
            ("memory", [line.id for line in plan.memories]),
            ("chunk", [line.id for line in plan.chunks]),
        ]
        for kind, ids in kinds:
            if taken := await named_by_the_other_type(self.conn, self.user_id, kind, ids):
                other = "chunk" if kind == "memory" else "memory"
                raise Conflict(f"{kind} {taken[0]}: the id already names a {other} of this user")

    def answer(self) -> Imported:
        return Imported(
            user_id=self.user_id,
            from_user_id=self.plan.header.user_id,
            imported={kind: self.imported[kind] for kind in LINE_TYPES},
            existing={kind: self.existing[kind] for kind in LINE_TYPES if kind != "vector"},
            vectors_skipped=self.vectors_skipped,
            queued=len(self.jobs),
            without_vector=self.without_vector,
        )

    def _home(self, space: str, kind: str) -> str:
        """The item's own space, or the kind's default here when that is not configured."""
        return space if space in self.configured else self.defaults[kind]

    async def _insert(self, kind: str, query: str, params: dict[str, Any], total: int) -> set[Any]:
        """Run an ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``; count what it wrote."""
        written = set(
            await fetch_all(self.conn, scalar_row, query, {"user": self.user_id, **params})
        )
        self.imported[kind] += len(written)
        self.existing[kind] += total - len(written)
        return written

    async def _batches(self) -> None:
        # documents name their batch; a batch a hand-made export leaves out is made for them
        batches = {b.id: b.created_at for b in self.plan.batches}
        for doc in self.plan.documents:
            batches.setdefault(doc.batch_id, doc.created_at)
        await self._insert(
            "batch",
            """
            INSERT INTO document_batches (user_id, id, created_at)
            SELECT %(user)s, t.id, coalesce(t.created_at, now())
            FROM unnest(%(ids)b::uuid[], %(created)b::timestamptz[]) AS t(id, created_at)
            ON CONFLICT DO NOTHING RETURNING id
            """,
            {"ids": list(batches), "created": list(batches.values())},
            len(batches),
        )

    async def _sessions(self) -> set[str]:
        rows = self.plan.sessions
        return await self._insert(
            "session",
            """
            INSERT INTO sessions (user_id, id, title, metadata, started_at, created_at,
                                  updated_at)
            SELECT %(user)s, t.id, t.title, t.metadata, t.started_at,
                   coalesce(t.created_at, now()), coalesce(t.updated_at, t.created_at, now())
            FROM unnest(%(ids)b::text[], %(titles)b::text[], %(metadata)b::jsonb[],
                        %(started)b::timestamptz[], %(created)b::timestamptz[],
                        %(updated)b::timestamptz[])
                 AS t(id, title, metadata, started_at, created_at, updated_at)
            ON CONFLICT DO NOTHING RETURNING id
            """,
            {
                "ids": [s.id for s in rows],
                "titles": [s.title for s in rows],
                "metadata": [Jsonb(s.metadata) for s in rows],
                "started": [s.started_at for s in rows],
                "created": [s.created_at for s in rows],
                "updated": [s.updated_at for s in rows],
            },
            len(rows),
        )

    async def _messages(self, new_sessions: set[str]) -> None:
        """The messages of sessions this import made; those of sessions already there stay."""
        rows = [m for m in self.plan.messages if m.session_id in new_sessions]
        self.existing["message"] += len(self.plan.messages) - len(rows)
        written = await self._insert(
            "message",
            """
            INSERT INTO messages (user_id, session_id, seq, id, role, name, content, metadata,
                                  memory_id, occurred_at, created_at)
            SELECT %(user)s, t.session_id, t.seq, t.id, t.role, t.name, t.content, t.metadata,
                   t.memory_id, coalesce(t.occurred_at, t.created_at, now()),
                   coalesce(t.created_at, now())
            FROM unnest(%(sessions)b::text[], %(seqs)b::bigint[], %(ids)b::uuid[],
                        %(roles)b::text[], %(names)b::text[], %(contents)b::text[],
                        %(metadata)b::jsonb[], %(memories)b::uuid[],
                        %(occurred)b::timestamptz[], %(created)b::timestamptz[])
                 AS t(session_id, seq, id, role, name, content, metadata, memory_id,
                      occurred_at, created_at)
            ON CONFLICT DO NOTHING RETURNING id
            """,
            {
                "sessions": [m.session_id for m in rows],
                "seqs": [m.seq for m in rows],
                "ids": [m.id for m in rows],
                "roles": [m.role for m in rows],
                "names": [m.name for m in rows],
                "contents": [m.content for m in rows],
                "metadata": [Jsonb(m.metadata) for m in rows],
                "memories": [m.memory_id for m in rows],
                "occurred": [m.occurred_at for m in rows],
                "created": [m.created_at for m in rows],
            },
            len(rows),
        )
        if taken := [m.id for m in rows if m.id not in written]:
            raise Conflict(f"message {taken[0]}: the id already names another message")

    async def _documents(self) -> set[UUID]:
        rows = self.plan.documents
        return await self._insert(
            "document",
            """
            INSERT INTO documents (user_id, id, collection, title, source, metadata, space,
                                   content_hash, generation, batch_id, created_at, updated_at)
            SELECT %(user)s, t.id, t.collection, t.title, t.source, t.metadata, t.space,
                   decode(t.hash, 'hex'), t.generation, t.batch_id,
                   coalesce(t.created_at, now()), coalesce(t.updated_at, t.created_at, now())
            FROM unnest(%(ids)b::uuid[], %(collections)b::text[], %(titles)b::text[],
                        %(sources)b::text[], %(metadata)b::jsonb[], %(spaces)b::text[],
                        %(hashes)b::text[], %(generations)b::int[], %(batches)b::uuid[],
                        %(created)b::timestamptz[], %(updated)b::timestamptz[])
                 AS t(id, collection, title, source, metadata, space, hash, generation,
                      batch_id, created_at, updated_at)
            ON CONFLICT DO NOTHING RETURNING id
            """,
            {
                "ids": [d.id for d in rows],
                "collections": [d.collection for d in rows],
                "titles": [d.title for d in rows],
                "sources": [d.source for d in rows],
                "metadata": [Jsonb(d.metadata) for d in rows],
                "spaces": [self._home(d.space, "document") for d in rows],
                "hashes": [d.content_sha256 for d in rows],
                "generations": [d.generation for d in rows],
                "batches": [d.batch_id for d in rows],
                "created": [d.created_at for d in rows],
                "updated": [d.updated_at for d in rows],
            },
            len(rows),
        )

    async def _chunks(self, new_documents: set[UUID]) -> None:
        """The chunks of documents this import made; a document already there keeps its own."""
        documents = {d.id: d for d in self.plan.documents}
        rows = [k for k in self.plan.chunks if k.document_id in new_documents]
        self.existing["chunk"] += len(self.plan.chunks) - len(rows)
        written = await self._insert(
            "chunk",
            """
            INSERT INTO chunks (user_id, id, document_id, generation, chunk_index, content,
                                content_hash, tokens, created_at, text_config)
            SELECT %(user)s, t.id, t.document_id, t.generation, t.chunk_index, t.content,
                   t.hash, t.tokens, coalesce(t.created_at, now()),
                   coalesce(t.language, nullif(current_setting('engram.text_config', true), ''),
                            'english')::regconfig
            FROM unnest(%(ids)b::uuid[], %(documents)b::uuid[], %(generations)b::int[],
                        %(indexes)b::int[], %(contents)b::text[], %(hashes)b::bytea[],
                        %(tokens)b::int[], %(created)b::timestamptz[], %(languages)b::text[])
                 AS t(id, document_id, generation, chunk_index, content, hash, tokens,
                      created_at, language)
            ON CONFLICT DO NOTHING RETURNING id
            """,
            {
                "ids": [k.id for k in rows],
                "documents": [k.document_id for k in rows],
                "generations": [documents[k.document_id].generation for k in rows],
                "indexes": [k.chunk_index for k in rows],
                "contents": [k.content for k in rows],
                "hashes": [content_hash(k.content) for k in rows],
                "tokens": [k.tokens for k in rows],
                "created": [k.created_at for k in rows],
                "languages": [k.language for k in rows],
            },
            len(rows),
        )
        if taken := [k.id for k in rows if k.id not in written]:
            raise Conflict(f"chunk {taken[0]}: the id already names another chunk")
        await self._embeddings(
            "chunk",
            [
                (k.id, k.content, self._home(documents[k.document_id].space, "document"))
                for k in rows
            ],
        )

    async def insert_memories(self, rows: list[MemoryLine]) -> None:
        """Insert memory rows, remembering which are new (their jobs and vectors come with
        the rest, in ``write``)."""
        if not rows:
            return
        homes = [self._home(m.space, "memory") for m in rows]
        written = await self._insert(
            "memory",
            """
            INSERT INTO memories (user_id, id, content, metadata, session_id, importance, space,
                                  content_hash, occurred_at, created_at, updated_at,
                                  expires_at, text_config)
            SELECT %(user)s, t.id, t.content, t.metadata, t.session_id, t.importance, t.space,
                   t.hash, coalesce(t.occurred_at, t.created_at, now()),
                   coalesce(t.created_at, now()),
                   coalesce(t.updated_at, t.created_at, now()), t.expires_at,
                   coalesce(t.language, nullif(current_setting('engram.text_config', true), ''),
                            'english')::regconfig
            FROM unnest(%(ids)b::uuid[], %(contents)b::text[], %(metadata)b::jsonb[],
                        %(sessions)b::text[], %(importance)b::float8[], %(spaces)b::text[],
                        %(hashes)b::bytea[], %(occurred)b::timestamptz[],
                        %(created)b::timestamptz[], %(updated)b::timestamptz[],
                        %(expires)b::timestamptz[], %(languages)b::text[])
                 AS t(id, content, metadata, session_id, importance, space, hash, occurred_at,
                      created_at, updated_at, expires_at, language)
            ON CONFLICT DO NOTHING RETURNING id
            """,
            {
                "ids": [m.id for m in rows],
                "contents": [m.content for m in rows],
                "metadata": [Jsonb(m.metadata) for m in rows],
                "sessions": [m.session_id for m in rows],
                "importance": [m.importance for m in rows],
                "spaces": homes,
                "hashes": [content_hash(m.content) for m in rows],
                "occurred": [m.occurred_at for m in rows],
                "created": [m.created_at for m in rows],
                "updated": [m.updated_at for m in rows],
                "expires": [m.expires_at for m in rows],
                "languages": [m.language for m in rows],
            },
            len(rows),
        )
        self.new_memories += [
            (m.id, m.content, home) for m, home in zip(rows, homes, strict=True) if m.id in written
        ]

    async def _embeddings(self, kind: ItemType, items: list[tuple[UUID, str, str]]) -> None:
        """Jobs of new items (id, content, home space): ``ready`` with their vector where one
        is usable, else ``pending`` (in their home space, and in every space being filled)."""
        states: list[tuple[UUID, str, bytes, str, str | None]] = []
        vectors: dict[str, list[tuple[UUID, bytes, np.ndarray]]] = {}
        for item_id, content, home in items:
            digest = content_hash(content)
            usable = {
                line.space: vector
                for line, vector in self.plan.vectors.get(item_id, [])
                if line.space in self.plan.usable and line.content_sha256 == digest.hex()
            }
            for space in dict.fromkeys([home, *self.fill, *usable]):
                if space in usable:
                    states.append((item_id, space, digest, "ready", None))
                    vectors.setdefault(space, []).append((item_id, digest, usable[space]))
                elif space in self.external:
                    states.append((item_id, space, digest, "failed", NO_CLIENT_VECTOR))
                    self.without_vector.append(item_id)
                else:
                    states.append((item_id, space, digest, "pending", None))
                    self.jobs.append(Job(space, self.user_id, item_id))
        await self.conn.execute(
            """
            INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, status,
                                     last_error, request_id, lane)
            SELECT %(user)s, t.id, t.space, %(kind)s, t.hash, t.status, t.error, %(request_id)s,
                   'bulk'
            FROM unnest(%(ids)b::uuid[], %(spaces)b::text[], %(hashes)b::bytea[],
                        %(statuses)b::text[], %(errors)b::text[])
                 AS t(id, space, hash, status, error)
            ON CONFLICT (user_id, item_id, space) DO UPDATE
            SET content_hash = EXCLUDED.content_hash, status = EXCLUDED.status, attempts = 0,
                last_error = EXCLUDED.last_error, claimed_until = NULL, queued_at = now(),
                updated_at = now(), pending_since = now(), request_id = EXCLUDED.request_id,
                lane = 'bulk'
            """,
            {
                "user": self.user_id,
                "kind": kind,
                "request_id": self.request_id,
                "ids": [s[0] for s in states],
                "spaces": [s[1] for s in states],
                "hashes": [s[2] for s in states],
                "statuses": [s[3] for s in states],
                "errors": [s[4] for s in states],
            },
        )
        for space, rows in vectors.items():
            await self._store_vectors(self.plan.usable[space], kind, rows)

    async def _store_vectors(
        self, space: Space, kind: ItemType, rows: list[tuple[UUID, bytes, np.ndarray]]
    ) -> None:
        """Store the vectors as they are: staged by a binary COPY (the database parsing
        their text cost more than the rest of an import), then inserted, replacing a
        vector left by an item deleted long ago (the item is new)."""
        self.staged += 1
        staging = sql.Identifier(f"import_vectors_{self.staged}")
        await self.conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (item_id uuid, content_hash bytea, embedding {}) "
                "ON COMMIT DROP"
            ).format(staging, sql.SQL(space.storage))
        )
        typed = HalfVector if space.storage == "halfvec" else Vector
        async with self.conn.cursor() as cursor:
            copy_in = sql.SQL(
                "COPY {} (item_id, content_hash, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ).format(staging)
            async with cursor.copy(copy_in) as copy:
                copy.set_types(["uuid", "bytea", space.storage])
                for item_id, digest, vector in rows:
                    await copy.write_row((item_id, digest, typed(vector)))
        await self.conn.execute(
            sql.SQL(
                """
                INSERT INTO {table} (user_id, item_id, kind, content_hash, embedding)
                SELECT %(user)s, s.item_id, %(kind)s, s.content_hash, s.embedding FROM {staging} s
                ON CONFLICT (user_id, item_id)
                DO UPDATE SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash,
                              kind = EXCLUDED.kind, indexed = false
                """
            ).format(table=sql.Identifier(space.table), staging=staging),
            {"user": self.user_id, "kind": kind},
        )
        self.imported["vector"] += len(rows)
