"""Documents: batch ingestion (JSON), listing, chunks, deletion, and batch progress."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import Parameter

from models import documents
from models.chunking import ChunkSpec, split_text
from models.documents import Batch, ChunkOut, Document, NewDocument
from models.errors import InvalidInput
from models.memories import content_hash
from models.settings import Limits
from models.types import Principal, Status
from models.validation import USER_ID_RE, check_metadata
from service.errors import ERRORS
from service.runtime import Runtime

Text = Annotated[str, msgspec.Meta(min_length=1)]
Label = Annotated[str, msgspec.Meta(max_length=1000)]


class DocumentIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    content: Text
    title: Label | None = None
    source: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    id: UUID | None = None
    # "markdown" splits at headings first; default: from the source's or title's extension
    format: Annotated[str, msgspec.Meta(pattern="^(text|markdown)$")] | None = None


class AddDocuments(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    documents: Annotated[list[DocumentIn], msgspec.Meta(min_length=1)]
    collection: str = "default"
    space: str | None = None  # default: the document default space


class Accepted(msgspec.Struct, kw_only=True):
    batch_id: UUID
    documents: list[Document]


class DocumentList(msgspec.Struct, kw_only=True):
    documents: list[Document]
    next_cursor: str | None = None


class ChunkList(msgspec.Struct, kw_only=True):
    chunks: list[ChunkOut]


class DocumentController(Controller):
    path = "/v1/users/{user_id:str}/documents"
    tags = ["documents"]

    @post("/", status_code=202, responses=ERRORS)
    async def add_documents(
        self, owner: str, principal: Principal, data: AddDocuments, runtime: Runtime
    ) -> Accepted:
        """Add documents: each is split into chunks, embedded in the background.

        The same content (by id, or without an id in the same collection) embeds nothing
        again; new content for a known id replaces its chunks atomically once embedded.
        """
        limits = runtime.settings.limits
        if len(data.documents) > limits.max_batch:
            raise InvalidInput(f"at most {limits.max_batch} documents a batch")
        if not USER_ID_RE.fullmatch(data.collection):
            raise InvalidInput("collection must be 1 to 128 characters of [A-Za-z0-9._:@-]")
        space = (
            runtime.spaces.get(data.space) if data.space else runtime.spaces.default_for("document")
        )
        text_chars = sum(len(d.content) for d in data.documents)
        # a written item costs 1; a document costs 1 and 1 more each 4,096 characters
        await runtime.limiter.charge(principal.key_id, len(data.documents) + text_chars // 4096)
        spec = ChunkSpec(max_tokens=space.chunk_tokens, overlap_tokens=space.chunk_overlap)
        counter = runtime.token_counter(space)
        items = await asyncio.to_thread(
            lambda: [_new_document(d, limits, spec, counter) for d in data.documents]
        )
        written = await runtime.as_user(
            owner, documents.write_documents, owner, space, data.collection, items
        )
        await runtime.wakeups.embed(written.jobs)
        return Accepted(batch_id=written.batch_id, documents=written.documents)

    @get("/", responses=ERRORS)
    async def list_documents(
        self,
        owner: str,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: str | None = None,
        collection: str | None = None,
        status: Status | None = None,
    ) -> DocumentList:
        """Documents, newest first; pass ``next_cursor`` back as ``cursor`` for more."""
        rows, next_cursor = await runtime.as_user(
            owner,
            documents.list_documents,
            owner,
            limit=limit,
            cursor=cursor,
            collection=collection,
            status=status,
        )
        return DocumentList(documents=rows, next_cursor=next_cursor)

    @get("/{document_id:uuid}", responses=ERRORS)
    async def get_document(self, owner: str, document_id: UUID, runtime: Runtime) -> Document:
        """One document; its status derives from its chunks."""
        return await runtime.as_user(owner, documents.get_document, owner, document_id)

    @get("/{document_id:uuid}/chunks", responses=ERRORS)
    async def get_chunks(self, owner: str, document_id: UUID, runtime: Runtime) -> ChunkList:
        """The document's chunks, in order."""
        found = await runtime.as_user(owner, documents.list_chunks, owner, document_id)
        return ChunkList(chunks=found)

    @delete("/{document_id:uuid}", status_code=204, responses=ERRORS)
    async def delete_document(self, owner: str, document_id: UUID, runtime: Runtime) -> None:
        """Delete a document with all its chunks and vectors; gone from search at once."""
        await runtime.as_user(owner, documents.delete_document, owner, document_id)


class BatchController(Controller):
    path = "/v1/users/{user_id:str}/batches"
    tags = ["documents"]

    @get("/{batch_id:uuid}", responses=ERRORS)
    async def get_batch(self, owner: str, batch_id: UUID, runtime: Runtime) -> Batch:
        """A batch's documents counted by status."""
        return await runtime.as_user(owner, documents.get_batch, owner, batch_id)


def _new_document(item: DocumentIn, limits: Limits, spec: ChunkSpec, counter: Any) -> NewDocument:
    if len(item.content.encode()) > limits.max_document_bytes:
        raise InvalidInput(f"a document is larger than {limits.max_document_bytes} bytes")
    for field, text in (("content", item.content), ("title", item.title), ("source", item.source)):
        if text is not None and "\x00" in text:
            raise InvalidInput(f"{field} must not contain NUL characters")
    markdown = item.format == "markdown" or (
        item.format is None
        and any(
            (name or "").lower().endswith((".md", ".markdown"))
            for name in (item.source, item.title)
        )
    )
    chunks = split_text(item.content, spec, counter, markdown=markdown)
    if not chunks:
        raise InvalidInput("content must not be empty")
    return NewDocument(
        id=item.id,
        title=item.title,
        source=item.source,
        metadata=check_metadata(item.metadata, limits),
        content_hash=content_hash(item.content),
        chunks=chunks,
    )
