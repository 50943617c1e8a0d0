"""Every operation of the Engram HTTP API, declared once for both clients (``_calls.py``).

docs/api.md describes each route; docs/client.md shows the client at work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import msgspec

from engram_client._calls import (
    Call,
    Flow,
    Page,
    cursor_pages,
    every_item,
    field_of,
    given,
    json_as,
    listing,
    nothing,
    operation,
    path,
    present,
    waiting,
)
from engram_client.types import (
    AcceptedDocuments,
    AddedMemory,
    ApiKey,
    AuditEntry,
    Batch,
    ChunkOut,
    Context,
    CreatedKey,
    Document,
    DocumentIn,
    DroppedSpace,
    Erased,
    FailedJob,
    Fusion,
    Health,
    Imported,
    ItemType,
    Memory,
    MemoryIn,
    Message,
    MessageIn,
    Readiness,
    RetriedJob,
    SearchResults,
    ServiceStatus,
    Session,
    SpaceInfo,
    Status,
    Weights,
)

NDJSON = "application/x-ndjson"
Id = UUID | str
Upload = str | Path | tuple[str, bytes | str]  # a file to read, or (file name, content)
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class Api:
    """The operations; ``Engram`` and ``AsyncEngram`` say how a call is sent."""

    # --- health -------------------------------------------------------------------------

    @operation
    def healthz(self) -> Call[Health]:
        """Liveness: the process serves."""
        return Call("GET", "/healthz", json_as(Health))

    @operation
    def readyz(self) -> Call[Readiness]:
        """Readiness, with what is missing (a 503 is an answer here, not an error)."""
        return Call("GET", "/readyz", json_as(Readiness), answers=frozenset({503}))

    @operation
    def metrics(self) -> Call[str]:
        """The Prometheus text exposition of ``/metrics``."""
        return Call("GET", "/metrics", bytes.decode)

    @operation
    def status(self, *, top: int = 5) -> Call[ServiceStatus]:
        """The embedding work at a glance: jobs by space and state, the queue, the ``top``
        commonest errors (admin)."""
        return Call("GET", "/v1/status", json_as(ServiceStatus), params={"top": top})

    # --- memories -----------------------------------------------------------------------

    @operation
    def add_memories(
        self,
        user_id: str,
        memories: Sequence[str | MemoryIn | Mapping[str, Any]],
        *,
        wait: bool = False,
        space: str | None = None,
        replace: bool = False,
        delete: Iterable[Id] = (),
        language: str | None = None,
    ) -> Call[list[AddedMemory]]:
        """Add memories, in order; with ``wait`` the answer comes once each is ``ready`` or
        ``failed`` (or the server's wait runs out: then some are still ``pending``). With
        ``replace`` a known id with other content takes the new one; ``delete`` deletes
        memories in the same transaction: all of it is written, or nothing. ``language``:
        the text-search configuration their words are indexed in (the server's default)."""
        items = [MemoryIn(content=m) if isinstance(m, str) else m for m in memories]
        body = {"memories": items, "wait": wait, **present(space=space, language=language)}
        body |= ({"replace": True} if replace else {}) | _deleting(delete)
        return Call(
            "POST",
            path("/v1/users/{}/memories", user_id),
            field_of("memories", list[AddedMemory]),
            body=body,
        )

    @listing
    def list_memories(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        status: Status | None = None,
        filter: Mapping[str, Any] | None = None,
        page_size: int = 100,
    ) -> Call[Page[Memory]]:
        """Every memory of the user, newest first, fetched a page at a time as you iterate;
        ``filter`` keeps those whose metadata matches (search's filter language)."""
        params = {
            "limit": page_size,
            "session_id": session_id,
            "status": status,
            "filter": None if filter is None else msgspec.json.encode(filter).decode(),
        }
        return cursor_pages(path("/v1/users/{}/memories", user_id), "memories", Memory, params)

    @operation
    def get_memory(self, user_id: str, memory_id: Id) -> Call[Memory]:
        """One memory."""
        return _get_memory(user_id, memory_id)

    @operation
    def update_memory(
        self,
        user_id: str,
        memory_id: Id,
        *,
        content: str | Unset = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        importance: float | Unset | None = UNSET,
        ttl_seconds: int | Unset | None = UNSET,
        occurred_at: datetime | Unset = UNSET,
        vector: Sequence[float] | Unset = UNSET,
        wait: bool = False,
    ) -> Call[Memory]:
        """Change what is given (None clears importance or TTL); new content is re-embedded,
        so the memory is ``pending`` again until then; with ``wait`` the answer comes once it
        is ``ready`` or ``failed`` (or the server's wait runs out: then it is ``pending``).
        In an external space new content comes with its ``vector`` and is ready at once."""
        body = given(
            content=content,
            metadata=metadata,
            importance=importance,
            ttl_seconds=ttl_seconds,
            occurred_at=occurred_at,
            vector=vector if isinstance(vector, Unset) else list(vector),
        )
        body |= waiting(wait)
        return Call(
            "PATCH",
            path("/v1/users/{}/memories/{}", user_id, memory_id),
            json_as(Memory),
            body=body,
        )

    @operation
    def delete_memory(self, user_id: str, memory_id: Id) -> Call[None]:
        """Delete a memory; it is gone from search at once."""
        return Call("DELETE", path("/v1/users/{}/memories/{}", user_id, memory_id), nothing)

    @operation
    def wait_for_memories(
        self, user_id: str, memory_ids: Iterable[Id], *, timeout: float = 60, interval: float = 0.2
    ) -> Flow[list[Memory]]:
        """Poll until none of these memories is ``pending`` or ``timeout`` seconds pass; the
        memories as they are then, in the order given."""
        ids = list(memory_ids)
        deadline = time.monotonic() + timeout
        while True:
            found: list[Memory] = []
            for memory_id in ids:
                found.append((yield _get_memory(user_id, memory_id)))
            if all(m.status != "pending" for m in found) or time.monotonic() >= deadline:
                return found
            yield interval

    # --- search and context -------------------------------------------------------------

    @operation
    def search(
        self,
        user_id: str,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        k: int | None = None,
        threshold: float | None = None,
        types: Sequence[ItemType] | None = None,
        filter: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        occurred_after: datetime | None = None,
        occurred_before: datetime | None = None,
        space: str | None = None,
        mode: Literal["vector", "hybrid"] | None = None,
        fusion: Fusion | None = None,
        language: str | None = None,
        diversity: float | None = None,
        weights: Weights | None = None,
        neighbors: int | None = None,
    ) -> Call[SearchResults]:
        """The ``k`` best ready items of the user for a text ``query`` or a ``vector`` (in an
        external space the ``vector``, with the ``query`` too for hybrid mode); options not
        given take the API's defaults (docs/api.md, "Search")."""
        body = present(
            query=query,
            vector=None if vector is None else list(vector),
            k=k,
            threshold=threshold,
            types=types,
            filter=filter,
            session_id=session_id,
            created_after=created_after,
            created_before=created_before,
            occurred_after=occurred_after,
            occurred_before=occurred_before,
            space=space,
            mode=mode,
            fusion=fusion,
            language=language,
            diversity=diversity,
            weights=weights,
            neighbors=neighbors,
        )
        return Call("POST", path("/v1/users/{}/search", user_id), json_as(SearchResults), body=body)

    @operation
    def context(
        self,
        user_id: str,
        query: str,
        *,
        vector: Sequence[float] | None = None,
        session_id: str | None = None,
        max_tokens: int | None = None,
        k: int | None = None,
        mode: Literal["vector", "hybrid"] | None = None,
        neighbors: int | None = None,
        floor: float | None = None,
        threshold: float | None = None,
        fusion: Fusion | None = None,
        language: str | None = None,
    ) -> Call[Context]:
        """What the user's memory holds on ``query`` (memories, and passages of past
        conversations around the messages found) and the session's latest messages, packed
        within ``max_tokens`` as text ready for a prompt; options not given take the API's
        defaults (docs/api.md, "Context for the next prompt"). When the memory space is
        external, ``vector`` is the query's."""
        body = present(
            query=query,
            vector=None if vector is None else list(vector),
            session_id=session_id,
            max_tokens=max_tokens,
            k=k,
            mode=mode,
            neighbors=neighbors,
            floor=floor,
            threshold=threshold,
            fusion=fusion,
            language=language,
        )
        return Call("POST", path("/v1/users/{}/context", user_id), json_as(Context), body=body)

    # --- documents ----------------------------------------------------------------------

    @operation
    def add_documents(
        self,
        user_id: str,
        documents: Sequence[DocumentIn | Mapping[str, Any]],
        *,
        collection: str | None = None,
        space: str | None = None,
        wait: bool = False,
        language: str | None = None,
    ) -> Call[AcceptedDocuments]:
        """Add documents as one batch; each is split into chunks and embedded in the
        background; with ``wait`` the answer comes once each is ``ready`` or ``failed`` (or
        the server's wait runs out), else ``wait_for_batch`` waits for it. ``language``: the
        text-search configuration the chunks' words are indexed in."""
        body: dict[str, Any] = {"documents": documents}
        body |= present(collection=collection, space=space, language=language)
        body |= waiting(wait)
        return Call(
            "POST",
            path("/v1/users/{}/documents", user_id),
            json_as(AcceptedDocuments),
            body=body,
        )

    @operation
    def upload_files(
        self,
        user_id: str,
        files: Sequence[Upload],
        *,
        collection: str | None = None,
        space: str | None = None,
        wait: bool = False,
        language: str | None = None,
    ) -> Call[AcceptedDocuments]:
        """Upload files (plain text, Markdown, HTML) as documents of one batch; the type
        comes from the file name; ``wait`` and ``language`` as for ``add_documents``."""
        parts = [("files", _upload(item)) for item in files]
        form = present(collection=collection, space=space, language=language,
                       wait="true" if wait else None)  # fmt: skip
        return Call(
            "POST",
            path("/v1/users/{}/documents/files", user_id),
            json_as(AcceptedDocuments),
            files=parts,
            form=form,
        )

    @listing
    def list_documents(
        self,
        user_id: str,
        *,
        collection: str | None = None,
        status: Status | None = None,
        page_size: int = 100,
    ) -> Call[Page[Document]]:
        """Every document of the user, newest first, a page at a time as you iterate."""
        params = {"limit": page_size, "collection": collection, "status": status}
        return cursor_pages(path("/v1/users/{}/documents", user_id), "documents", Document, params)

    @operation
    def get_document(self, user_id: str, document_id: Id) -> Call[Document]:
        """One document; its status derives from its chunks."""
        return Call(
            "GET", path("/v1/users/{}/documents/{}", user_id, document_id), json_as(Document)
        )

    @operation
    def list_chunks(self, user_id: str, document_id: Id) -> Call[list[ChunkOut]]:
        """The document's chunks, in order."""
        return Call(
            "GET",
            path("/v1/users/{}/documents/{}/chunks", user_id, document_id),
            field_of("chunks", list[ChunkOut]),
        )

    @operation
    def delete_document(self, user_id: str, document_id: Id) -> Call[None]:
        """Delete a document with its chunks and vectors."""
        return Call("DELETE", path("/v1/users/{}/documents/{}", user_id, document_id), nothing)

    @operation
    def get_batch(self, user_id: str, batch_id: Id) -> Call[Batch]:
        """A batch's documents counted by status."""
        return _get_batch(user_id, batch_id)

    @operation
    def wait_for_batch(
        self, user_id: str, batch_id: Id, *, timeout: float = 600, interval: float = 0.5
    ) -> Flow[Batch]:
        """Poll until the batch is ``completed`` or ``failed``, or ``timeout`` seconds pass
        (then it is still ``in_progress``)."""
        deadline = time.monotonic() + timeout
        while True:
            batch: Batch = yield _get_batch(user_id, batch_id)
            if batch.status != "in_progress" or time.monotonic() >= deadline:
                return batch
            yield interval

    # --- sessions -----------------------------------------------------------------------

    @operation
    def create_session(
        self,
        user_id: str,
        session_id: str | None = None,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        started_at: datetime | None = None,
    ) -> Call[Session]:
        """Create a session (the id is chosen by the server unless given); the same id with
        the same title, metadata and start is a no-op."""
        body = present(id=session_id, title=title, metadata=metadata, started_at=started_at)
        return Call("POST", path("/v1/users/{}/sessions", user_id), json_as(Session), body=body)

    @listing
    def list_sessions(self, user_id: str, *, page_size: int = 100) -> Call[Page[Session]]:
        """Every session of the user, newest first, a page at a time as you iterate."""
        url = path("/v1/users/{}/sessions", user_id)
        return cursor_pages(url, "sessions", Session, {"limit": page_size})

    @operation
    def get_session(self, user_id: str, session_id: str) -> Call[Session]:
        """One session, with its number of messages."""
        return Call("GET", path("/v1/users/{}/sessions/{}", user_id, session_id), json_as(Session))

    @operation
    def delete_session(
        self, user_id: str, session_id: str, *, keep_memories: bool = False
    ) -> Call[None]:
        """Delete the session and its messages, and its memories unless ``keep_memories``."""
        return Call(
            "DELETE",
            path("/v1/users/{}/sessions/{}", user_id, session_id),
            nothing,
            params={"keep_memories": "true"} if keep_memories else None,
        )

    @operation
    def add_messages(
        self,
        user_id: str,
        session_id: str,
        messages: Sequence[MessageIn | Mapping[str, Any]],
        *,
        wait: bool = False,
        language: str | None = None,
    ) -> Call[list[Message]]:
        """Append messages (``{"role", "content"}``, and optionally the speaker's ``name``,
        ``metadata``, the client's ``id``, ``occurred_at``) in order; each is remembered as
        a memory of its own in the session (``memory_id``); a message whose ``id`` is
        stored already is that message again. With ``wait`` the answer comes once those
        are embedded (or failed, or the server's wait runs out). ``language``: the
        text-search configuration their words are indexed in."""
        return Call(
            "POST",
            path("/v1/users/{}/sessions/{}/messages", user_id, session_id),
            field_of("messages", list[Message]),
            body={"messages": messages, **waiting(wait), **present(language=language)},
        )

    @listing
    def list_messages(
        self, user_id: str, session_id: str, *, after: int = 0, page_size: int = 100
    ) -> Call[Page[Message]]:
        """The session's messages in order, from the one after ``seq`` ``after``."""
        url = path("/v1/users/{}/sessions/{}/messages", user_id, session_id)
        return _messages(url, after, page_size)

    # --- the user as a whole ------------------------------------------------------------

    @operation
    def erase_user(self, user_id: str) -> Call[Erased]:
        """Erase everything of the user, vectors included; answers what was deleted."""
        return Call("DELETE", path("/v1/users/{}", user_id), json_as(Erased))

    @operation
    def export_user(self, user_id: str) -> Call[bytes]:
        """Everything of the user as NDJSON, vectors included (read whole into memory)."""
        return Call("GET", path("/v1/users/{}/export", user_id), bytes)

    @operation
    def import_user(self, user_id: str, export: bytes | Path) -> Call[Imported]:
        """Import an export (``export_user``'s bytes, or a file of them) into this user;
        idempotent: what the user already has stays as it is."""
        body = export.read_bytes() if isinstance(export, Path) else export
        return Call(
            "POST",
            path("/v1/users/{}/import", user_id),
            json_as(Imported),
            body=body,
            media_type=NDJSON,
        )

    # --- admin: keys, spaces, jobs, audit -----------------------------------------------

    @operation
    def create_key(self, user_id: str | None = None) -> Call[CreatedKey]:
        """A key that may act on ``user_id`` only, or an admin key; the secret is in
        ``key``, shown this once."""
        return Call("POST", "/v1/keys", json_as(CreatedKey), body=present(user_id=user_id))

    @operation
    def list_keys(self, *, page_size: int = 100) -> Flow[list[ApiKey]]:
        """Every key, newest first, never its secret (fetched a page at a time)."""
        return every_item(cursor_pages("/v1/keys", "keys", ApiKey, {"limit": page_size}))

    @operation
    def revoke_key(self, key_id: Id) -> Call[None]:
        """Revoke a key; it stops working at once."""
        return Call("DELETE", path("/v1/keys/{}", key_id), nothing)

    @operation
    def list_spaces(self) -> Call[list[SpaceInfo]]:
        """The embedding spaces, with the caller's items in each by state."""
        return Call("GET", "/v1/spaces", json_as(list[SpaceInfo]))

    @operation
    def get_space(self, name: str) -> Call[SpaceInfo]:
        """One embedding space."""
        return Call("GET", path("/v1/spaces/{}", name), json_as(SpaceInfo))

    @operation
    def backfill_space(self, name: str) -> Call[SpaceInfo]:
        """Embed every existing item into this space in the background (admin)."""
        return Call("POST", path("/v1/spaces/{}/backfill", name), json_as(SpaceInfo))

    @operation
    def drop_space(self, name: str) -> Call[DroppedSpace]:
        """Drop a space's vectors and jobs, not its items (admin; not a default space)."""
        return Call("DELETE", path("/v1/spaces/{}", name), json_as(DroppedSpace))

    @listing
    def failed_jobs(self, *, page_size: int = 100) -> Call[Page[FailedJob]]:
        """Items whose embedding failed for good, with the error (admin)."""
        return cursor_pages("/v1/jobs/failed", "jobs", FailedJob, {"limit": page_size})

    @operation
    def retry_job(self, item_id: Id) -> Call[RetriedJob]:
        """Embed a failed item again with fresh attempts (admin)."""
        return Call("POST", path("/v1/jobs/{}/retry", item_id), json_as(RetriedJob))

    @listing
    def audit_log(
        self,
        *,
        action: str | None = None,
        actor: Id | None = None,
        user_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> Call[Page[AuditEntry]]:
        """Admin actions, newest first (admin); each filter given narrows them: ``action``
        (e.g. ``"key.create"``), ``actor`` (the key that acted), ``user_id`` (the end user
        concerned), ``since`` (inclusive) and ``until`` (exclusive), times with a zone."""
        params = {
            "limit": page_size,
            "action": action,
            "actor": None if actor is None else str(actor),
            "user_id": user_id,
            "since": None if since is None else since.isoformat(),
            "until": None if until is None else until.isoformat(),
        }
        return cursor_pages("/v1/audit", "entries", AuditEntry, params)


def _deleting(ids: Iterable[Id]) -> dict[str, list[str]]:
    """The body field deleting these memories, if any."""
    chosen = [str(memory_id) for memory_id in ids]
    return {"delete": chosen} if chosen else {}


def _get_memory(user_id: str, memory_id: Id) -> Call[Memory]:
    return Call("GET", path("/v1/users/{}/memories/{}", user_id, memory_id), json_as(Memory))


def _get_batch(user_id: str, batch_id: Id) -> Call[Batch]:
    return Call("GET", path("/v1/users/{}/batches/{}", user_id, batch_id), json_as(Batch))


def _messages(url: str, after: int, limit: int) -> Call[Page[Message]]:
    read_list = field_of("messages", list[Message])

    def read(raw: bytes) -> Page[Message]:
        found: list[Message] = read_list(raw)
        full = len(found) == limit
        return Page(found, _messages(url, found[-1].seq, limit) if full else None)

    return Call("GET", url, read, params={"after": after, "limit": limit})


def _upload(item: Upload) -> tuple[str, bytes]:
    if isinstance(item, tuple):
        name, content = item
        return name, content.encode() if isinstance(content, str) else content
    file = Path(item)
    return file.name, file.read_bytes()
