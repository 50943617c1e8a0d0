"""The tools: what an agent may do with its user's memory. Each calls the core functions
the HTTP routes call, with the routes' request types and checks (models/validation.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from models.errors import InvalidInput, NotFound
from models.store import memories, memory_writes, users
from models.types import Memory, NewMemory
from models.validation import check_session_id
from service.http.routes.context import ContextIn, answer_context
from service.http.routes.memories import MemoryChange, MemoryIn, memory_patch, new_memory
from service.http.routes.search import SearchIn, answer_search
from service.http.wait import until_settled
from service.mcp.caller import Caller, caller, tool_errors

FORGET_ALL_CONFIRMATION = "forget everything"
READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

Json = dict[str, Any]
MemoryId = Annotated[str, Field(description="a memory's id, as remember or recall gave it")]
SessionId = Annotated[
    str | None, Field(description="the conversation this belongs to, if any (your own id)")
]
EventTime = Annotated[
    str | None,
    Field(description="when it happened, RFC 3339 with an offset (default: now)"),
]

INSTRUCTIONS = """\
Engram is long-term memory for the user you are talking with. Call get_context (or recall)
before answering anything that may depend on what you were told before; call remember with
each durable fact, preference or decision, one self-contained sentence each. Everything is
private to this user: the key you connect with decides whose memory you read and write."""


def build_server() -> MCPServer:
    """Engram's MCP server: the tools, unbound until a request's key binds them to a user."""
    server: MCPServer = MCPServer("engram", instructions=INSTRUCTIONS)
    for tool, hints in TOOLS:
        server.tool(annotations=hints)(tool)
    return server


def _json(value: Any) -> Json:
    found: Json = msgspec.to_builtins(value)
    return found


def _convert(data: Json, kind: type[msgspec.Struct]) -> Any:
    """``data`` as the HTTP route's request type, with its checks; a tool error if not."""
    try:
        return msgspec.convert({k: v for k, v in data.items() if v is not None}, kind)
    except msgspec.ValidationError as exc:
        raise ToolError(f"invalid arguments: {exc}") from exc


def _memory_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ToolError(f"{value!r} is not a memory id") from None


async def remember(
    content: Annotated[str, Field(description="the fact, in one self-contained sentence")],
    ctx: Context,
    metadata: Annotated[
        Json | None, Field(description="JSON object to filter on later, e.g. {'topic': 'food'}")
    ] = None,
    importance: Annotated[
        float | None, Field(description="0 (trivia) to 1 (vital); recall can weigh it")
    ] = None,
    occurred_at: EventTime = None,
    session_id: SessionId = None,
    wait: Annotated[
        bool, Field(description="answer once it is searchable (embedded), up to a timeout")
    ] = False,
) -> Json:
    """Store a memory for this user: a fact, preference or event worth recalling later.
    The same content in the same session is stored once (the answer says duplicate). It is
    searchable once embedded, usually within a second (status 'ready'); pass wait=true to
    answer only then."""
    with tool_errors():
        call = caller(ctx)
        item = _convert(
            {
                "content": content,
                "metadata": metadata,
                "importance": importance,
                "occurred_at": occurred_at,
                "session_id": session_id,
            },
            MemoryIn,
        )
        space = call.runtime.spaces.default_for("memory")
        new: NewMemory = new_memory(item, call.runtime.settings.limits, space)
        await call.runtime.limiter.charge(call.principal.key_id, 1)
        written = await call.runtime.as_user(
            call.owner,
            memory_writes.insert_memories,
            call.owner,
            space,
            [new],
            request_id=call.request_id,
        )
        await call.runtime.wakeups.embed(written.jobs)
        memory = written.memories[0]
        if wait:
            memory = await _settled(call, memory)
        return {**_json(memory), "duplicate": written.duplicate[0]}


async def recall(
    query: Annotated[str, Field(description="what to look for, in natural language")],
    ctx: Context,
    k: Annotated[int, Field(description="how many results, 1 to 100")] = 10,
    filter: Annotated[
        Json | None,
        Field(description="metadata conditions, e.g. {'topic': 'food'} (docs/api.md, Filters)"),
    ] = None,
    mode: Annotated[
        Literal["hybrid", "vector"],
        Field(description="hybrid (meaning and exact words; best for names) or vector"),
    ] = "hybrid",
) -> Json:
    """Search this user's memories (and documents) for the ones most relevant to a query,
    best first, each with its id, content, metadata and score."""
    with tool_errors():
        call = caller(ctx)
        data = _convert({"query": query, "k": k, "filter": filter, "mode": mode}, SearchIn)
        return _json(await answer_search(call.runtime, call.principal, call.owner, data))


async def get_context(
    query: Annotated[str, Field(description="what the next answer is about")],
    ctx: Context,
    max_tokens: Annotated[
        int, Field(description="the most the text may take, 32 to 100000")
    ] = 1000,
    session_id: SessionId = None,
) -> Json:
    """What this user's memory holds on a query, packed as text ready for a prompt within
    max_tokens: the relevant memories and passages of past conversations, then the
    session's latest messages. Use it before answering; 'text' is what to read."""
    with tool_errors():
        call = caller(ctx)
        data = _convert(
            {"query": query, "max_tokens": max_tokens, "session_id": session_id}, ContextIn
        )
        return _json(await answer_context(call.runtime, call.principal, call.owner, data))


async def list_memories(
    ctx: Context,
    limit: Annotated[int, Field(description="how many, 1 to 100")] = 20,
    cursor: Annotated[
        str | None, Field(description="next_cursor of the previous page, for the next one")
    ] = None,
    session_id: SessionId = None,
) -> Json:
    """List this user's memories, newest first, a page at a time; pass next_cursor back as
    cursor for the next page (null: no more)."""
    with tool_errors():
        call = caller(ctx)
        if not 1 <= limit <= 100:
            raise InvalidInput("limit must be 1 to 100")
        if cursor is not None and len(cursor) > 512:
            raise InvalidInput("cursor is not one this server gave")
        rows, next_cursor = await call.runtime.reading(
            call.owner,
            memories.list_memories,
            call.owner,
            limit=limit,
            cursor=cursor,
            session_id=check_session_id(session_id),
        )
        return {"memories": _json(rows), "next_cursor": next_cursor}


async def get_memory(id: MemoryId, ctx: Context) -> Json:
    """One memory of this user by its id: its content, metadata, importance, times and
    status ('pending' until it is searchable, 'ready', or 'failed')."""
    with tool_errors():
        call = caller(ctx)
        memory_id = _memory_id(id)
        found = await call.runtime.reading(call.owner, memories.get_memory, call.owner, memory_id)
        return _json(found)


async def update_memory(
    id: MemoryId,
    ctx: Context,
    content: Annotated[str | None, Field(description="new content (embedded again)")] = None,
    metadata: Annotated[Json | None, Field(description="new metadata, replacing it")] = None,
    importance: Annotated[float | None, Field(description="new importance, 0 to 1")] = None,
    occurred_at: EventTime = None,
) -> Json:
    """Correct a memory of this user: what is given replaces what it had, the rest stays.
    Prefer this to a second, contradicting memory when a fact changes."""
    with tool_errors():
        call = caller(ctx)
        memory_id = _memory_id(id)
        change = _convert(
            {
                "content": content,
                "metadata": metadata,
                "importance": importance,
                "occurred_at": occurred_at,
            },
            MemoryChange,
        )
        patch = memory_patch(change, call.runtime.settings.limits)
        await call.runtime.limiter.charge(
            call.principal.key_id, int(patch.content is not msgspec.UNSET)
        )
        written = await call.runtime.as_user(
            call.owner,
            memories.update_memory,
            call.owner,
            memory_id,
            patch,
            spaces=call.runtime.spaces,
            request_id=call.request_id,
        )
        await call.runtime.wakeups.embed(written.jobs)
        return _json(written.memories[0])


async def forget(
    ids: Annotated[list[str], Field(description="the ids of the memories to delete")],
    ctx: Context,
) -> Json:
    """Delete memories of this user by id; they are gone from search at once. Answers which
    were deleted and which were not found."""
    with tool_errors():
        call = caller(ctx)
        limits = call.runtime.settings.limits
        if not 1 <= len(ids) <= limits.max_batch:
            raise InvalidInput(f"give 1 to {limits.max_batch} ids")
        deleted, not_found = [], []
        for memory_id in dict.fromkeys(map(_memory_id, ids)):
            try:
                await call.runtime.as_user(
                    call.owner, memories.delete_memory, call.owner, memory_id
                )
            except NotFound:
                not_found.append(str(memory_id))
            else:
                deleted.append(str(memory_id))
        return {"deleted": deleted, "not_found": not_found}


async def forget_all(
    confirm: Annotated[
        str, Field(description=f"exactly '{FORGET_ALL_CONFIRMATION}', to say it is meant")
    ],
    ctx: Context,
) -> Json:
    """Erase everything stored for this user: every memory, document, session and message.
    It cannot be undone: call it only when the user asked for it in so many words."""
    with tool_errors():
        call = caller(ctx)
        if confirm != FORGET_ALL_CONFIRMATION:
            raise InvalidInput(f"confirm must be exactly '{FORGET_ALL_CONFIRMATION}'")
        erased = await call.runtime.as_user(
            call.owner,
            users.erase_user,
            call.owner,
            spaces=call.runtime.spaces.names(),
            actor=call.principal.key_id,
        )
        return _json(erased)


TOOLS: list[tuple[Callable[..., Awaitable[Json]], ToolAnnotations]] = [
    (remember, WRITES),
    (recall, READS),
    (get_context, READS),
    (list_memories, READS),
    (get_memory, READS),
    (update_memory, WRITES),
    (forget, DELETES),
    (forget_all, DELETES),
]


async def _settled(call: Caller, memory: Memory) -> Memory:
    """``memory`` once it is no longer pending, or as it is when the wait times out."""
    runtime = call.runtime

    async def read() -> Memory:
        found = await runtime.as_user(call.owner, memories.get_memories, call.owner, [memory.id])
        return found[0] if found else memory

    now, _ = await until_settled(
        runtime.settlements,
        call.owner,
        runtime.settings.server.wait_timeout_seconds,
        read,
        lambda now: now.status != "pending",
    )
    return now
