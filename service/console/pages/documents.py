"""A user's documents and batches: each document's state and error, its chunks' states and
errors, and a batch's documents by state."""

from __future__ import annotations

from typing import Annotated, Any, cast
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from models.store import documents
from models.types import Status
from service.console.render import FORM, STATES, chosen, page
from service.console.session import PATH, USER_PAGE_GUARDS
from service.http.runtime import Runtime

PAGE_SIZE = 50
Cursor = Annotated[str | None, Parameter(max_length=512)]


class DocumentPages(Controller):
    path = f"{PATH}/users/{{user_id:str}}"
    guards = USER_PAGE_GUARDS

    @get("/documents")
    async def documents(
        self,
        request: Request[Any, Any, Any],
        user_id: str,
        runtime: Runtime,
        cursor: Cursor = None,
        collection: Annotated[str | None, Parameter(max_length=256)] = None,
        state_filter: Annotated[str | None, Parameter(query="state", max_length=16)] = None,
        deleted: UUID | None = None,
    ) -> Response[str]:
        """A page of documents, newest first, filtered by collection and state."""
        item_state = cast(Status | None, chosen(state_filter, STATES, "state"))
        rows, next_cursor = await runtime.as_user(
            user_id, documents.list_documents, user_id, limit=PAGE_SIZE, cursor=cursor,
            collection=collection or None, status=item_state,
        )  # fmt: skip
        return page(
            request, "documents.html", user_id=user_id, documents=rows, next_cursor=next_cursor,
            filters={"collection": collection or "", "state": item_state or ""},
            filtered=bool(collection or item_state), cursor=cursor, deleted=deleted,
        )  # fmt: skip

    @get("/documents/{document_id:uuid}")
    async def document(
        self, request: Request[Any, Any, Any], user_id: str, document_id: UUID, runtime: Runtime
    ) -> Response[str]:
        """One document and its chunks, each with its embedding state and error."""
        document = await runtime.as_user(user_id, documents.get_document, user_id, document_id)
        chunks = await runtime.as_user(user_id, documents.list_chunks, user_id, document_id)
        return page(request, "document.html", user_id=user_id, document=document, chunks=chunks)

    @post("/documents/{document_id:uuid}/delete", opt=FORM)
    async def delete(self, user_id: str, document_id: UUID, runtime: Runtime) -> Response[Any]:
        """Delete the document with its chunks, jobs and vectors."""
        await runtime.as_user(user_id, documents.delete_document, user_id, document_id)
        return Redirect(f"{PATH}/users/{user_id}/documents?deleted={document_id}", status_code=303)

    @get("/batches/{batch_id:uuid}")
    async def batch(
        self,
        request: Request[Any, Any, Any],
        user_id: str,
        batch_id: UUID,
        runtime: Runtime,
        cursor: Cursor = None,
    ) -> Response[str]:
        """A batch's state and counts, and its documents with theirs."""
        batch = await runtime.as_user(user_id, documents.get_batch, user_id, batch_id)
        rows, next_cursor = await runtime.as_user(
            user_id, documents.list_documents, user_id, limit=PAGE_SIZE, cursor=cursor,
            batch_id=batch_id,
        )  # fmt: skip
        return page(
            request, "batch.html", user_id=user_id, batch=batch, documents=rows,
            next_cursor=next_cursor, cursor=cursor,
        )  # fmt: skip
