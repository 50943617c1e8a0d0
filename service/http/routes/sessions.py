"""Sessions (chat memory): create and list them, append and read messages, delete one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from models.embedding.spaces import Space
from models.errors import InvalidInput
from models.settings import Limits
from models.store import memories, sessions
from models.store.items import in_language
from models.store.sessions import Message, NewMessage, NewSession, Role, Session
from models.types import Principal
from models.validation import (
    check_content,
    check_event_time,
    check_metadata,
    check_session_id,
    check_speaker_name,
    client_vector,
    naming,
)
from service.http.auth import USER_GUARDS
from service.http.errors import ERRORS
from service.http.observe import current_request_id
from service.http.routes.search import Language
from service.http.runtime import Runtime
from service.http.wait import settled


class SessionIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str | None = None
    title: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    started_at: datetime | None = None  # RFC 3339 with an offset


class SessionList(msgspec.Struct, kw_only=True):
    sessions: list[Session]
    next_cursor: str | None = None


class MessageIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: Role
    content: Annotated[str, msgspec.Meta(min_length=1)]
    name: str | None = None  # the speaker's, beside the role
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    id: uuid.UUID | None = None  # the client's: the same message sent again is stored once
    occurred_at: datetime | None = None  # RFC 3339 with an offset; default: now
    # its memory's vector, made by the client: when the memory space is external, and only then
    vector: list[float] | None = None


class AddMessages(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[list[MessageIn], msgspec.Meta(min_length=1)]
    wait: bool = False  # until the messages' memories are embedded (or failed)
    language: Language | None = None  # their words' text-search configuration


class MessageList(msgspec.Struct, kw_only=True):
    messages: list[Message]


class SessionController(Controller):
    path = "/v1/users/{user_id:str}/sessions"
    tags = ["sessions"]
    guards = USER_GUARDS

    @post("/", status_code=201, responses=ERRORS)
    async def create_session(
        self, owner: str, principal: Principal, data: SessionIn, runtime: Runtime
    ) -> Session:
        """Create a session; the same id with the same title and metadata is a no-op."""
        if data.title is not None and "\x00" in data.title:
            raise InvalidInput("title must not contain NUL characters")
        new = NewSession(
            id=check_session_id(data.id) or str(uuid.uuid4()),
            title=data.title,
            metadata=check_metadata(data.metadata, runtime.settings.limits),
            started_at=check_event_time(data.started_at, field="started_at"),
        )
        await runtime.limiter.charge(principal.key_id, 1)
        return await runtime.as_user(owner, sessions.create_session, owner, new)

    @get("/", responses=ERRORS)
    async def list_sessions(
        self,
        owner: str,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
    ) -> SessionList:
        """Sessions, newest first; pass ``next_cursor`` back as ``cursor`` for more."""
        rows, next_cursor = await runtime.reading(
            owner, sessions.list_sessions, owner, limit=limit, cursor=cursor
        )
        return SessionList(sessions=rows, next_cursor=next_cursor)

    @get("/{session_id:str}", responses=ERRORS)
    async def get_session(self, owner: str, session_id: str, runtime: Runtime) -> Session:
        """One session, with its number of messages."""
        return await runtime.reading(owner, sessions.get_session, owner, _id(session_id))

    @post(
        "/{session_id:str}/messages",
        status_code=201,
        responses={
            **ERRORS,
            202: ResponseSpec(
                MessageList,
                description="with wait: the server-side timeout passed first",
                generate_examples=False,
            ),
        },
    )
    async def add_messages(
        self,
        request: Request[Any, Any, Any],
        owner: str,
        principal: Principal,
        session_id: str,
        data: AddMessages,
        runtime: Runtime,
    ) -> Response[MessageList]:
        """Append messages in order; each is remembered as a memory of the session
        (``wait`` to answer once those are embedded). When the memory space is external,
        each message brings its memory's ``vector``."""
        limits = runtime.settings.limits
        if len(data.messages) > limits.max_batch:
            raise InvalidInput(f"at most {limits.max_batch} messages a request")
        space = runtime.spaces.default_for("memory")
        new = []
        for i, m in enumerate(data.messages):
            with naming(f"messages[{i}]"):
                new.append(_new_message(m, limits, space))
        await runtime.limiter.charge(principal.key_id, len(new))
        added, jobs = await runtime.as_user(
            owner,
            in_language,
            await runtime.text_config(data.language),
            sessions.add_messages,
            owner,
            _id(session_id),
            space,
            new,
            request_id=current_request_id(),
        )
        await runtime.wakeups.embed(jobs)
        answer = MessageList(messages=added)
        if not data.wait:
            return Response(answer, status_code=201)
        ids = [m.memory_id for m in added if m.memory_id is not None]

        async def read() -> list[Any]:
            return await runtime.as_user(owner, memories.get_memories, owner, ids)

        _, done = await settled(
            request,
            runtime.settlements,
            owner,
            runtime.settings.server.wait_timeout_seconds,
            read,
            lambda now: all(m.status != "pending" for m in now),
        )
        return Response(answer, status_code=201 if done else 202)

    @get("/{session_id:str}/messages", responses=ERRORS)
    async def list_messages(
        self,
        owner: str,
        session_id: str,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        after: Annotated[int, Parameter(ge=0, le=2**63 - 1)] = 0,
    ) -> MessageList:
        """Messages in order; ``after`` is the ``seq`` of the last message already read."""
        found = await runtime.reading(
            owner, sessions.list_messages, owner, _id(session_id), limit=limit, after=after
        )
        return MessageList(messages=found)

    @delete("/{session_id:str}", status_code=204, responses=ERRORS)
    async def delete_session(
        self, owner: str, session_id: str, runtime: Runtime, keep_memories: bool = False
    ) -> None:
        """Delete the session and its messages, and its memories unless ``keep_memories``."""
        await runtime.as_user(
            owner,
            sessions.delete_session,
            owner,
            _id(session_id),
            keep_memories=keep_memories,
        )


def _new_message(message: MessageIn, limits: Limits, space: Space) -> NewMessage:
    """A message to append, checked; its memory goes to ``space``, with the message's
    vector when that space is external."""
    external = space.external or message.vector is not None
    return NewMessage(
        vector=client_vector(message.vector, space) if external else None,
        role=message.role,
        content=check_content(message.content, limits),
        name=check_speaker_name(message.name),
        metadata=check_metadata(message.metadata, limits),
        id=message.id,
        occurred_at=check_event_time(message.occurred_at),
    )


def _id(session_id: str) -> str:
    checked = check_session_id(session_id)
    assert checked is not None
    return checked
