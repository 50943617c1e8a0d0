"""Memories: batch add (optionally waiting for embeddings), list, get, patch, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from models.embedding.spaces import Space
from models.errors import InvalidInput
from models.settings import Limits
from models.store import memories, memory_writes
from models.store.items import in_language
from models.types import Memory, MemoryPatch, NewMemory, Principal, Status
from models.validation import (
    check_content,
    check_event_time,
    check_filter,
    check_metadata,
    check_session_id,
    client_vector,
    naming,
)
from service.http.auth import USER_GUARDS
from service.http.errors import ERRORS
from service.http.observe import current_request_id
from service.http.routes.search import Language
from service.http.runtime import Runtime
from service.http.wait import settled

Importance = Annotated[float, msgspec.Meta(ge=0, le=1)]
Content = Annotated[str, msgspec.Meta(min_length=1)]
Ttl = Annotated[int, msgspec.Meta(ge=1, le=10 * 365 * 24 * 3600)]


class MemoryIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    content: Content
    metadata: dict[str, Any] = {}
    session_id: str | None = None
    importance: Importance | None = None
    ttl_seconds: Ttl | None = None
    id: UUID | None = None
    occurred_at: datetime | None = None  # RFC 3339 with an offset; default: now
    # the content's vector, made by the client: for an external space, and only there
    vector: list[float] | None = None


class AddMemories(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    memories: list[MemoryIn]  # at least one, unless ``delete`` names some
    wait: bool = False
    space: str | None = None  # default: the memory default space
    replace: bool = False  # a known id with other content (or expired) takes the item's
    delete: list[UUID] = []  # memories deleted in the same transaction (unknown: skipped)
    language: Language | None = None  # their words' text-search configuration


class MemoryChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    content: Content | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    importance: Importance | msgspec.UnsetType | None = msgspec.UNSET
    ttl_seconds: Ttl | msgspec.UnsetType | None = msgspec.UNSET
    occurred_at: datetime | msgspec.UnsetType = msgspec.UNSET
    # new content's vector, for a memory of an external space (required there with content)
    vector: list[float] | None = None
    wait: bool = False


class MemoryList(msgspec.Struct, kw_only=True):
    memories: list[Memory]
    next_cursor: str | None = None


class AddedMemory(Memory, frozen=True, kw_only=True):
    # the content was already stored (same user and session): this is the existing memory
    duplicate: bool = False


class AddedMemories(msgspec.Struct, kw_only=True):
    memories: list[AddedMemory]
    deleted: int = 0  # the memories of ``delete`` that were deleted


def _added(stored: list[Memory], written: memories.Written) -> AddedMemories:
    return AddedMemories(
        memories=[
            AddedMemory(**msgspec.structs.asdict(memory), duplicate=dup)
            for memory, dup in zip(stored, written.duplicate, strict=True)
        ],
        deleted=written.deleted,
    )


def check_batch(data: AddMemories, limits: Limits) -> None:
    """Something to write or delete, within the batch limit, and no id both written and
    deleted."""
    if not data.memories and not data.delete:
        raise InvalidInput("memories must not be empty (or delete must name memories)")
    for name, count in (("memories", len(data.memories)), ("delete", len(data.delete))):
        if count > limits.max_batch:
            raise InvalidInput(f"at most {limits.max_batch} items in {name}")
    written = {item.id for item in data.memories if item.id is not None}
    if both := sorted(written.intersection(data.delete)):
        raise InvalidInput(f"memory {both[0]} is both written and deleted")


def metadata_filter(text: str | None, limits: Limits) -> dict[str, Any] | None:
    """The ``filter`` query parameter: a JSON object within the metadata limits (its grammar
    is checked when it is compiled), or None."""
    if text is None:
        return None
    try:
        conditions = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"filter must be a JSON object: {exc}") from None
    if not isinstance(conditions, dict):
        raise InvalidInput("filter must be a JSON object")
    return check_filter(conditions, limits)


def new_memory(item: MemoryIn, limits: Limits, space: Space) -> NewMemory:
    """A memory to write into ``space``, checked: its vector is the client's in an external
    space (required there), and refused in a space the server embeds in."""
    external = space.external or item.vector is not None
    return NewMemory(
        vector=client_vector(item.vector, space) if external else None,
        id=item.id,
        content=check_content(item.content, limits),
        metadata=check_metadata(item.metadata, limits),
        session_id=check_session_id(item.session_id),
        importance=item.importance,
        ttl_seconds=item.ttl_seconds,
        occurred_at=check_event_time(item.occurred_at),
    )


def memory_patch(change: MemoryChange, limits: Limits) -> MemoryPatch:
    return MemoryPatch(
        content=change.content
        if change.content is msgspec.UNSET
        else check_content(change.content, limits),
        metadata=change.metadata
        if change.metadata is msgspec.UNSET
        else check_metadata(change.metadata, limits),
        importance=change.importance,
        ttl_seconds=change.ttl_seconds,
        occurred_at=change.occurred_at
        if change.occurred_at is msgspec.UNSET
        else check_event_time(change.occurred_at) or msgspec.UNSET,
        vector=change.vector,
    )


class MemoryController(Controller):
    path = "/v1/users/{user_id:str}/memories"
    tags = ["memories"]
    guards = USER_GUARDS

    @post(
        "/",
        status_code=202,
        responses={
            **ERRORS,
            200: ResponseSpec(
                AddedMemories,
                description="with wait: every item ready or failed",
                generate_examples=False,
            ),
        },
    )
    async def add_memories(
        self,
        request: Request[Any, Any, Any],
        owner: str,
        principal: Principal,
        data: AddMemories,
        runtime: Runtime,
    ) -> Response[AddedMemories]:
        """Add memories; they are embedded in the background (``wait`` to wait for it). In
        an external space each brings its ``vector`` and is ready at once.

        Content the user already has (in the same session) is stored once: its answer is the
        existing memory with ``duplicate`` true. With ``replace``, a known id with other
        content takes the item's; ``delete`` deletes memories in the same transaction.
        """
        limits = runtime.settings.limits
        check_batch(data, limits)
        await runtime.limiter.charge(principal.key_id, max(1, len(data.memories)))
        space = (
            runtime.spaces.get(data.space) if data.space else runtime.spaces.default_for("memory")
        )
        items = []
        for i, item in enumerate(data.memories):
            with naming(f"memories[{i}]"):
                items.append(new_memory(item, limits, space))
        written = await runtime.as_user(
            owner,
            in_language,
            await runtime.text_config(data.language),
            memory_writes.insert_memories,
            owner,
            space,
            items,
            request_id=current_request_id(),
            replace=data.replace,
            delete=data.delete,
        )
        await runtime.wakeups.embed(written.jobs)
        stored = written.memories
        if not data.wait:
            return Response(_added(stored, written), status_code=202)
        now, done = await _settled(request, runtime, owner, stored)
        return Response(_added(now, written), status_code=200 if done else 202)

    @get("/", responses=ERRORS)
    async def list_memories(
        self,
        owner: str,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
        session_id: str | None = None,
        status: Status | None = None,
        filter: Annotated[
            str | None,
            Parameter(
                max_length=16384,
                description="a metadata filter: a JSON object, in search's filter language",
            ),
        ] = None,
    ) -> MemoryList:
        """List memories, newest first; pass ``next_cursor`` back as ``cursor`` for more
        (with the same filters)."""
        rows, next_cursor = await runtime.reading(
            owner,
            memories.list_memories,
            owner,
            limit=limit,
            cursor=cursor,
            session_id=session_id,
            status=status,
            metadata=metadata_filter(filter, runtime.settings.limits),
        )
        return MemoryList(memories=rows, next_cursor=next_cursor)

    @get("/{memory_id:uuid}", responses=ERRORS)
    async def get_memory(self, owner: str, memory_id: UUID, runtime: Runtime) -> Memory:
        """One memory."""
        return await runtime.reading(owner, memories.get_memory, owner, memory_id)

    @patch(
        "/{memory_id:uuid}",
        responses={
            **ERRORS,
            202: ResponseSpec(
                Memory,
                description="with wait: the server-side timeout passed first",
                generate_examples=False,
            ),
        },
    )
    async def update_memory(
        self,
        request: Request[Any, Any, Any],
        owner: str,
        principal: Principal,
        memory_id: UUID,
        data: MemoryChange,
        runtime: Runtime,
    ) -> Response[Memory]:
        """Change a memory; new content is embedded again (``wait`` to wait for it). Until
        its new vector is stored, search finds the memory by its old one."""
        change = memory_patch(data, runtime.settings.limits)
        await runtime.limiter.charge(principal.key_id, int(change.content is not msgspec.UNSET))
        written = await runtime.as_user(
            owner,
            memories.update_memory,
            owner,
            memory_id,
            change,
            spaces=runtime.spaces,
            request_id=current_request_id(),
        )
        await runtime.wakeups.embed(written.jobs)
        if not data.wait:
            return Response(written.memories[0], status_code=200)
        now, done = await _settled(request, runtime, owner, written.memories)
        return Response(now[0], status_code=200 if done else 202)

    @delete("/{memory_id:uuid}", status_code=204, responses=ERRORS)
    async def delete_memory(self, owner: str, memory_id: UUID, runtime: Runtime) -> None:
        """Delete a memory and its vector; it is gone from search at once."""
        await runtime.as_user(owner, memories.delete_memory, owner, memory_id)


async def _settled(
    request: Request[Any, Any, Any], runtime: Runtime, user_id: str, stored: list[Memory]
) -> tuple[list[Memory], bool]:
    """``stored`` as they are once none is pending, or when the wait times out: (in the
    order of ``stored``, whether none is pending). A memory deleted meanwhile keeps its last
    state."""
    ids = [m.id for m in stored]

    async def read() -> list[Memory]:
        found = {
            m.id: m for m in await runtime.as_user(user_id, memories.get_memories, user_id, ids)
        }
        return [found.get(m.id, m) for m in stored]

    return await settled(
        request,
        runtime.settlements,
        user_id,
        runtime.settings.server.wait_timeout_seconds,
        read,
        lambda now: all(m.status != "pending" for m in now),
    )
