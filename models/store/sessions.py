"""Sessions and messages: a conversation kept in order, each message remembered as a memory.

Each message becomes a memory of its own in its session (``session_id``, its event time,
and its metadata with ``{"role": ..., "name": ...}``; its content led by the speaker's name
when the message names one), so searches and lists of memories find it like any other;
the message keeps the memory's id. A message the client named
(``id``) is stored once: sent again with the same content it is the stored one, with other
content a conflict. Deleting a session deletes its messages and, unless asked to keep
them, every memory of the session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row, scalar_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import Space
from models.errors import Conflict, InvalidInput, NotFound
from models.jobs.messages import Job
from models.store import memories, memory_writes
from models.store.cursors import decode_cursor, encode_cursor
from models.types import Message as Message
from models.types import NewMemory
from models.types import Role as Role
from models.types import Session as Session


class NewSession(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str | None
    metadata: dict[str, Any]
    started_at: datetime | None = None


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    content: str
    name: str | None = None  # the speaker's
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    id: UUID | None = None  # the client's
    occurred_at: datetime | None = None  # None: now
    # its memory's vector (numpy.ndarray), when the memory space is external
    vector: Any = None


_SESSION = """
    SELECT s.id, s.user_id, s.title, s.metadata, s.started_at, s.created_at, s.updated_at,
           (SELECT count(*) FROM messages m
            WHERE m.user_id = s.user_id AND m.session_id = s.id) AS message_count
    FROM sessions s
"""
_MESSAGE_COLUMNS = (
    "id, session_id, seq, role, name, content, metadata, memory_id, occurred_at, created_at"
)
_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages"


async def create_session(conn: AsyncConnection, user_id: str, new: NewSession) -> Session:
    """Create a session; the same id with the same title, metadata and start is a no-op."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO sessions (user_id, id, title, metadata, started_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, id) DO NOTHING",
            [user_id, new.id, new.title, Jsonb(new.metadata), new.started_at],
        )
        session = await get_session(conn, user_id, new.id)
    stored = (session.title, session.metadata, session.started_at)
    if stored != (new.title, new.metadata, new.started_at):
        raise Conflict(f"session {new.id} already exists with another title, metadata or start")
    return session


async def get_session(conn: AsyncConnection, user_id: str, session_id: str) -> Session:
    found = await fetch_one(
        conn,
        class_row(Session),
        f"{_SESSION} WHERE s.user_id = %s AND s.id = %s",
        [user_id, session_id],
    )
    if found is None:
        raise NotFound(f"session {session_id} not found")
    return found


async def list_sessions(
    conn: AsyncConnection, user_id: str, *, limit: int, cursor: str | None = None
) -> tuple[list[Session], str | None]:
    """Sessions, newest first, and the cursor of the next page (None at the end)."""
    after_at, after_id = None, None
    if cursor:
        at, after_id = decode_cursor(cursor, parts=2)
        try:
            after_at = datetime.fromisoformat(at)
        except ValueError:
            raise InvalidInput("invalid cursor") from None
    rows = await fetch_all(
        conn,
        class_row(Session),
        f"""{_SESSION}
        WHERE s.user_id = %(user)s
          AND (%(at)s::timestamptz IS NULL OR (s.created_at, s.id) < (%(at)s, %(id)s))
        ORDER BY s.created_at DESC, s.id DESC LIMIT %(limit)s""",
        {"user": user_id, "at": after_at, "id": after_id, "limit": limit + 1},
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at.isoformat(), last.id)


async def add_messages(
    conn: AsyncConnection,
    user_id: str,
    session_id: str,
    space: Space,
    new: list[NewMessage],
    *,
    request_id: str | None = None,
) -> tuple[list[Message], list[Job]]:
    """Append messages in order, each remembered as a memory of its own; answers in
    request order. A message whose id is known (stored, or earlier in the batch) with the
    same content, in this session, is the stored one again; with other content, or in
    another session, a ``Conflict``, and nothing of the batch is written."""
    async with conn.transaction():
        locked = await fetch_one(
            conn,
            scalar_row,
            "SELECT id FROM sessions WHERE user_id = %s AND id = %s FOR UPDATE",
            [user_id, session_id],
        )
        if locked is None:  # the lock also keeps concurrent appends in order
            raise NotFound(f"session {session_id} not found")
        known = await _stored_messages(conn, user_id, [m.id for m in new if m.id is not None])
        fresh: list[NewMessage] = []
        named: dict[UUID, NewMessage] = {}  # the batch's messages by the client's ids
        for message in new:
            if message.id is None:
                fresh.append(message)
                continue
            same = known.get(message.id) or named.get(message.id)
            if same is None:
                named[message.id] = message
                fresh.append(message)
            elif isinstance(same, Message) and same.session_id != session_id:
                raise Conflict(f"message {message.id} already exists in another session")
            elif same.content != message.content:
                raise Conflict(f"message {message.id} already exists with other content")
        added, jobs = await _append(conn, user_id, session_id, space, fresh, request_id)
        await conn.execute(
            "UPDATE sessions SET updated_at = now() WHERE user_id = %s AND id = %s",
            [user_id, session_id],
        )
    by_id = {m.id: m for m in [*known.values(), *added]}
    unnamed = iter([a for a, f in zip(added, fresh, strict=True) if f.id is None])
    return [by_id[m.id] if m.id is not None else next(unnamed) for m in new], jobs


async def _stored_messages(
    conn: AsyncConnection, user_id: str, ids: list[UUID]
) -> dict[UUID, Message]:
    if not ids:
        return {}
    rows = await fetch_all(
        conn,
        class_row(Message),
        f"{_MESSAGE} WHERE user_id = %s AND id = ANY(%s)",
        [user_id, ids],
    )
    return {m.id: m for m in rows}


async def _append(
    conn: AsyncConnection,
    user_id: str,
    session_id: str,
    space: Space,
    fresh: list[NewMessage],
    request_id: str | None,
) -> tuple[list[Message], list[Job]]:
    """The new messages, in order (their ids the client's or new), and their memories' jobs.
    A client's id another session took meanwhile is a ``Conflict``."""
    if not fresh:
        return [], []
    written = await memory_writes.insert_memories(
        conn,
        user_id,
        space,
        [
            NewMemory(
                id=uuid4(),  # a new id: a memory of its own, whatever its content
                content=remembered(m),
                metadata=_memory_metadata(m),
                session_id=session_id,
                importance=None,
                ttl_seconds=None,
                occurred_at=m.occurred_at,
                vector=m.vector,
            )
            for m in fresh
        ],
        request_id=request_id,
    )
    ids = [m.id or uuid4() for m in fresh]
    added = await fetch_all(
        conn,
        class_row(Message),
        f"""
        INSERT INTO messages (user_id, session_id, seq, id, role, name, content, metadata,
                              memory_id, occurred_at)
        SELECT %(user)s, %(session)s,
               (SELECT coalesce(max(seq), 0) FROM messages
                WHERE user_id = %(user)s AND session_id = %(session)s) + n.ord,
               n.id, n.role, n.name, n.content, n.metadata, n.memory_id,
               coalesce(n.occurred_at, now())
        FROM unnest(%(ids)s::uuid[], %(roles)s::text[], %(names)s::text[],
                    %(contents)b::text[], %(metadata)b::jsonb[], %(memories)s::uuid[],
                    %(occurred)s::timestamptz[])
             WITH ORDINALITY AS n(id, role, name, content, metadata, memory_id, occurred_at, ord)
        ON CONFLICT (user_id, id) DO NOTHING
        RETURNING {_MESSAGE_COLUMNS}
        """,
        {
            "user": user_id,
            "session": session_id,
            "ids": ids,
            "roles": [m.role for m in fresh],
            "names": [m.name for m in fresh],
            "contents": [m.content for m in fresh],
            "metadata": [Jsonb(m.metadata) for m in fresh],
            "memories": [m.id for m in written.memories],
            "occurred": [m.occurred_at for m in fresh],
        },
    )
    if len(added) < len(fresh):
        taken = next(i for i in ids if i not in {m.id for m in added})
        raise Conflict(f"message {taken} already exists in another session")
    return sorted(added, key=lambda message: message.seq), written.jobs


def remembered(message: NewMessage) -> str:
    """What a message's memory says: who said it, when the message names its speaker, so
    that a search finds a person's words by their name and a hit reads as a line of the
    conversation."""
    return f"{message.name}: {message.content}" if message.name else message.content


def _memory_metadata(message: NewMessage) -> dict[str, Any]:
    """The message's metadata, with its role and speaker's name (which win over its own)."""
    said = {"role": message.role} | ({"name": message.name} if message.name else {})
    return message.metadata | said


async def list_messages(
    conn: AsyncConnection, user_id: str, session_id: str, *, limit: int, after: int = 0
) -> list[Message]:
    """The session's messages in order, from after the message numbered ``after``."""
    await get_session(conn, user_id, session_id)
    return await fetch_all(
        conn,
        class_row(Message),
        f"{_MESSAGE} WHERE user_id = %s AND session_id = %s AND seq > %s ORDER BY seq LIMIT %s",
        [user_id, session_id, after, limit],
    )


async def latest_messages(
    conn: AsyncConnection, user_id: str, session_id: str, *, limit: int
) -> list[Message]:
    """The session's last ``limit`` messages, newest first."""
    await get_session(conn, user_id, session_id)
    return await fetch_all(
        conn,
        class_row(Message),
        f"{_MESSAGE} WHERE user_id = %s AND session_id = %s ORDER BY seq DESC LIMIT %s",
        [user_id, session_id, limit],
    )


async def delete_session(
    conn: AsyncConnection, user_id: str, session_id: str, *, keep_memories: bool
) -> None:
    """Delete the session and its messages, and (unless kept) every memory of it."""
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM sessions WHERE user_id = %s AND id = %s", [user_id, session_id]
        )
        if cur.rowcount == 0:
            raise NotFound(f"session {session_id} not found")
        await conn.execute(
            "DELETE FROM messages WHERE user_id = %s AND session_id = %s", [user_id, session_id]
        )
        if not keep_memories:
            await memories.delete_session_memories(conn, user_id, session_id)
