"""A user's memories: the list, filtered by session, state and metadata (search's filter
language, applied in the database); one memory, its embedding state in every space, editing
and deleting it."""

from __future__ import annotations

import json
from typing import Annotated, Any, cast
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from models.errors import InvalidInput
from models.jobs import status as job_status
from models.store import memories
from models.types import Memory, Status
from models.validation import check_session_id
from service.console.render import FORM, STATES, chosen, page
from service.console.session import PATH, USER_PAGE_GUARDS, caller
from service.http.observe import current_request_id
from service.http.routes.memories import MemoryChange, memory_patch, metadata_filter
from service.http.runtime import Runtime

PAGE_SIZE = 50
Cursor = Annotated[str | None, Parameter(max_length=512)]


class MemoryPages(Controller):
    path = f"{PATH}/users/{{user_id:str}}/memories"
    guards = USER_PAGE_GUARDS

    @get("/")
    async def memories(
        self,
        request: Request[Any, Any, Any],
        user_id: str,
        runtime: Runtime,
        cursor: Cursor = None,
        session_id: Annotated[str | None, Parameter(max_length=256)] = None,
        state_filter: Annotated[str | None, Parameter(query="state", max_length=16)] = None,
        metadata: Annotated[str | None, Parameter(max_length=16384)] = None,
        deleted: UUID | None = None,
    ) -> Response[str]:
        """A page of memories, newest first; each filter is shown, and a filter that matches
        nothing says so."""
        item_state = cast(Status | None, chosen(state_filter, STATES, "state"))
        session = check_session_id(session_id or None)
        wanted = metadata_filter((metadata or "").strip() or None, runtime.settings.limits)
        shown, next_cursor = await runtime.as_user(
            user_id, memories.list_memories, user_id, limit=PAGE_SIZE, cursor=cursor,
            session_id=session, status=item_state, metadata=wanted,
        )  # fmt: skip
        return page(
            request,
            "memories.html",
            user_id=user_id,
            memories=shown,
            next_cursor=next_cursor,
            filters={
                "session_id": session or "",
                "state": item_state or "",
                "metadata": metadata or "",
            },
            filtered=bool(session or item_state or wanted),
            cursor=cursor,
            deleted=deleted,
        )

    @get("/{memory_id:uuid}")
    async def memory(
        self, request: Request[Any, Any, Any], user_id: str, memory_id: UUID, runtime: Runtime
    ) -> Response[str]:
        """One memory, its embedding state in every space, and the form that edits it."""
        return await _memory_page(request, runtime, user_id, memory_id)

    @post("/{memory_id:uuid}/edit", opt=FORM)
    async def edit(
        self, request: Request[Any, Any, Any], user_id: str, memory_id: UUID, runtime: Runtime
    ) -> Response[Any]:
        """Change what the form changed; new content is embedded again."""
        form = await request.form()
        current = await runtime.as_user(user_id, memories.get_memory, user_id, memory_id)
        try:
            change = memory_patch(_change(current, form), runtime.settings.limits)
        except InvalidInput as exc:
            return await _memory_page(
                request, runtime, user_id, memory_id, error=str(exc), form=form, status=422
            )
        principal = caller(request)
        await runtime.limiter.charge(principal.key_id, int(change.content is not msgspec.UNSET))
        written = await runtime.as_user(
            user_id,
            memories.update_memory,
            user_id,
            memory_id,
            change,
            spaces=runtime.spaces,
            request_id=current_request_id(),
        )
        await runtime.wakeups.embed(written.jobs)
        return Redirect(f"{PATH}/users/{user_id}/memories/{memory_id}?saved=1", status_code=303)

    @post("/{memory_id:uuid}/delete", opt=FORM)
    async def delete(self, user_id: str, memory_id: UUID, runtime: Runtime) -> Response[Any]:
        """Delete the memory and its vectors; back to the list, which says so."""
        await runtime.as_user(user_id, memories.delete_memory, user_id, memory_id)
        return Redirect(f"{PATH}/users/{user_id}/memories?deleted={memory_id}", status_code=303)


async def _memory_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    user_id: str,
    memory_id: UUID,
    *,
    error: str | None = None,
    form: Any = None,
    status: int = 200,
) -> Response[str]:
    memory = await runtime.as_user(user_id, memories.get_memory, user_id, memory_id)
    states = await runtime.as_user(user_id, job_status.item_states, user_id, memory_id)
    missing = [name for name in runtime.spaces.names() if name not in {s.space for s in states}]
    return page(
        request,
        "memory.html",
        status=status,
        user_id=user_id,
        memory=memory,
        states=states,
        missing=missing,
        error=error,
        saved=request.query_params.get("saved") == "1",
        form={
            "content": form.get("content") if form else memory.content,
            "metadata": form.get("metadata")
            if form
            else json.dumps(memory.metadata, indent=2, ensure_ascii=False, sort_keys=True),
            "importance": form.get("importance")
            if form
            else ("" if memory.importance is None else memory.importance),
        },
    )


def _change(current: Memory, form: Any) -> MemoryChange:
    """What the edit form changes of ``current``: the fields that differ from it."""
    fields: dict[str, Any] = {}
    content = str(form.get("content", "")).replace("\r\n", "\n")
    if content != current.content:
        fields["content"] = content
    metadata = _json_object(str(form.get("metadata", "")) or "{}", "metadata")
    if metadata != current.metadata:
        fields["metadata"] = metadata
    importance = _importance(str(form.get("importance", "")).strip())
    if importance != current.importance:
        fields["importance"] = importance
    try:
        return msgspec.convert(fields, MemoryChange)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from None


def _importance(text: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInput("importance must be a number from 0 to 1, or empty") from None


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{name} must be a JSON object: {exc.msg} at line {exc.lineno}"
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(f'{name} must be a JSON object, like {{"topic": "travel"}}')
    return value
