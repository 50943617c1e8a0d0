"""Documents: batch ingestion (JSON), listing, chunks, deletion, and batch progress."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.openapi import ResponseSpec
from litestar.params import Body, Parameter

from models.errors import InvalidInput
from models.ingest.chunking import ChunkSpec, split_text
from models.ingest.extract import file_text
from models.jobs.messages import Lane
from models.settings import Limits
from models.store import documents
from models.store.documents import Batch, ChunkOut, Document, NewDocument
from models.store.items import content_hash, in_language
from models.types import Principal, Status
from models.validation import USER_ID_RE, check_metadata, naming
from service.http.auth import USER_GUARDS
from service.http.errors import ERRORS
from service.http.observe import current_request_id
from service.http.routes.search import Language
from service.http.runtime import Runtime
from service.http.wait import settled

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
    wait: bool = False
    language: Language | None = None  # their chunks' words' text-search configuration


@dataclass
class FilesIn:
    """A multipart upload: one or more ``files`` parts, and optional fields."""

    files: list[UploadFile]
    collection: str = "default"
    space: str | None = None
    wait: bool = False
    language: str | None = None


class AcceptedDocuments(msgspec.Struct, kw_only=True):
    batch_id: UUID
    documents: list[Document]


class DocumentList(msgspec.Struct, kw_only=True):
    documents: list[Document]
    next_cursor: str | None = None


class ChunkList(msgspec.Struct, kw_only=True):
    chunks: list[ChunkOut]


WAITED = {
    **ERRORS,
    200: ResponseSpec(
        AcceptedDocuments,
        description="with wait: every document ready or failed",
        generate_examples=False,
    ),
}


class DocumentController(Controller):
    path = "/v1/users/{user_id:str}/documents"
    tags = ["documents"]
    guards = USER_GUARDS

    @post("/", status_code=202, responses=WAITED)
    async def add_documents(
        self,
        request: Request[Any, Any, Any],
        owner: str,
        principal: Principal,
        data: AddDocuments,
        runtime: Runtime,
    ) -> Response[AcceptedDocuments]:
        """Add documents: each is split into chunks, embedded in the background (``wait``
        to wait for it).

        The same content (by id, or without an id in the same collection) embeds nothing
        again; new content for a known id replaces its chunks atomically once embedded.
        """
        accepted = await _ingest(
            runtime, owner, principal, data.documents, data.collection, data.space,
            lane=lane_of(len(data.documents), wait=data.wait), language=data.language,
        )  # fmt: skip
        return await _answer(request, runtime, owner, accepted, wait=data.wait)

    @post(
        "/files",
        status_code=202,
        responses=WAITED,
        # litestar binds one media type per handler: uploads get a path of their own
        # (docs/api.md), with the same answer as JSON batches
        opt={"body": "multipart/form-data"},
    )
    async def upload_documents(
        self,
        request: Request[Any, Any, Any],
        owner: str,
        principal: Principal,
        data: Annotated[FilesIn, Body(media_type=RequestEncodingType.MULTI_PART)],
        runtime: Runtime,
    ) -> Response[AcceptedDocuments]:
        """Upload files (plain text, Markdown, HTML) as documents of one batch.

        Each file becomes a document whose ``source`` is its file name; HTML is reduced to
        its text with headings kept.
        """
        uploads = data.files
        limits = runtime.settings.limits
        if not uploads:
            raise InvalidInput("send at least one file in the field 'files'")
        if len(uploads) > limits.max_batch:
            raise InvalidInput(f"at most {limits.max_batch} files a batch")
        docs = []
        for upload in uploads:
            raw = await upload.read(limits.max_document_bytes + 1)
            name = upload.filename or "upload"
            if len(raw) > limits.max_document_bytes:
                raise InvalidInput(f"{name} is larger than {limits.max_document_bytes} bytes")
            text, kind = await asyncio.to_thread(file_text, name, upload.content_type, raw)
            docs.append(DocumentIn(content=text, title=name, source=name, format=kind))
        accepted = await _ingest(
            runtime, owner, principal, docs, data.collection, data.space,
            lane=lane_of(len(docs), wait=data.wait), language=data.language,
        )  # fmt: skip
        return await _answer(request, runtime, owner, accepted, wait=data.wait)

    @get("/", responses=ERRORS)
    async def list_documents(
        self,
        owner: str,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
        collection: str | None = None,
        status: Status | None = None,
    ) -> DocumentList:
        """Documents, newest first; pass ``next_cursor`` back as ``cursor`` for more."""
        rows, next_cursor = await runtime.reading(
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
        return await runtime.reading(owner, documents.get_document, owner, document_id)

    @get("/{document_id:uuid}/chunks", responses=ERRORS)
    async def get_chunks(self, owner: str, document_id: UUID, runtime: Runtime) -> ChunkList:
        """The document's chunks, in order."""
        found = await runtime.reading(owner, documents.list_chunks, owner, document_id)
        return ChunkList(chunks=found)

    @delete("/{document_id:uuid}", status_code=204, responses=ERRORS)
    async def delete_document(self, owner: str, document_id: UUID, runtime: Runtime) -> None:
        """Delete a document with all its chunks and vectors; gone from search at once."""
        await runtime.as_user(owner, documents.delete_document, owner, document_id)


class BatchController(Controller):
    path = "/v1/users/{user_id:str}/batches"
    tags = ["documents"]
    guards = USER_GUARDS

    @get("/{batch_id:uuid}", responses=ERRORS)
    async def get_batch(self, owner: str, batch_id: UUID, runtime: Runtime) -> Batch:
        """A batch's documents counted by status."""
        return await runtime.reading(owner, documents.get_batch, owner, batch_id)


async def _ingest(
    runtime: Runtime,
    owner: str,
    principal: Principal,
    docs: list[DocumentIn],
    collection: str,
    space_name: str | None,
    *,
    lane: Lane,
    language: str | None,
) -> AcceptedDocuments:
    limits = runtime.settings.limits
    text_config = await runtime.text_config(language)
    if len(docs) > limits.max_batch:
        raise InvalidInput(f"at most {limits.max_batch} documents a batch")
    if not USER_ID_RE.fullmatch(collection):
        raise InvalidInput("collection must be 1 to 128 characters of [A-Za-z0-9._:@-]")
    space = runtime.spaces.get(space_name) if space_name else runtime.spaces.default_for("document")
    if space.external:
        raise InvalidInput(
            f"space {space.name} is external: the server splits documents into chunks and "
            "embeds them, which it cannot do there; store your own chunks as memories of "
            "that space, each with its vector"
        )
    text_chars = sum(len(d.content) for d in docs)
    # a written item costs 1; a document costs 1 and 1 more each 4,096 characters
    await runtime.limiter.charge(principal.key_id, len(docs) + text_chars // 4096)
    spec = ChunkSpec(
        max_tokens=space.chunk_tokens,
        overlap_tokens=space.chunk_overlap,
        max_chars=limits.max_content_chars,  # a chunk must import again as it exported
    )
    counter = await runtime.token_counter(space)
    items = await asyncio.to_thread(_new_documents, docs, limits, spec, counter)
    written = await runtime.as_user(
        owner,
        in_language,
        text_config,
        documents.write_documents,
        owner,
        space,
        collection,
        items,
        request_id=current_request_id(),
        lane=lane,
    )
    await runtime.wakeups.embed(written.jobs)
    return AcceptedDocuments(batch_id=written.batch_id, documents=written.documents)


def lane_of(documents: int, *, wait: bool) -> Lane:
    """A batch of several documents, unless written with ``wait``, is bulk work: a single
    document and anything a client waits for go ahead of it (models/jobs/outbox.py)."""
    return "bulk" if documents > 1 and not wait else "interactive"


def _new_documents(
    docs: list[DocumentIn], limits: Limits, spec: ChunkSpec, counter: Any
) -> list[NewDocument]:
    items = []
    for i, doc in enumerate(docs):
        with naming(f"documents[{i}]"):
            items.append(_new_document(doc, limits, spec, counter))
    return items


async def _answer(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    owner: str,
    accepted: AcceptedDocuments,
    *,
    wait: bool,
) -> Response[AcceptedDocuments]:
    """202 with the documents accepted; with ``wait``, once none is pending (200) or when
    the wait times out (202)."""
    if not wait:
        return Response(accepted, status_code=202)
    ids = [d.id for d in accepted.documents]

    async def read() -> list[Document]:
        found = {d.id: d for d in await runtime.as_user(owner, documents.get_documents, owner, ids)}
        return [found.get(d.id, d) for d in accepted.documents]

    now, done = await settled(
        request,
        runtime.settlements,
        owner,
        runtime.settings.server.wait_timeout_seconds,
        read,
        lambda now: all(d.status != "pending" for d in now),
    )
    answer = AcceptedDocuments(batch_id=accepted.batch_id, documents=now)
    return Response(answer, status_code=200 if done else 202)


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
