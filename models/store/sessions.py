"""Sessions and messages: a conversation kept in order, each message remembered as a memory.

A message becomes a memory of its session (``session_id``, with ``{"role": ...}`` in its
metadata), so searches and lists of memories find it like any other; the message keeps
the memory's id. Deleting a session deletes its messages and, unless asked to keep them,
every memory of the session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row, scalar_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import Space
from models.errors import Conflict, InvalidInput, NotFound
from models.jobs.messages import Job
from models.store import memories
from models.store.cursors import decode_cursor, encode_cursor
from models.types import Message as Message
from models.types import NewMemory
from models.types import Role as Role
from models.types import Session as Session


class NewSession(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str | None
    metadata: dict[str, Any]


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    content: str


_SESSION = """
    SELECT s.id, s.user_id, s.title, s.metadata, s.created_at, s.updated_at,
           (SELECT count(*) FROM messages m
            WHERE m.user_id = s.user_id AND m.session_id = s.id) AS message_count
    FROM sessions s
"""
_MESSAGE = "SELECT id, session_id, seq, role, content, memory_id, created_at FROM messages"


async def create_session(conn: AsyncConnection, user_id: str, new: NewSession) -> Session:
    """Create a session; the same id with the same title and metadata is a no-op."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO sessions (user_id, id, title, metadata) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (user_id, id) DO NOTHING",
            [user_id, new.id, new.title, Jsonb(new.metadata)],
        )
        session = await get_session(conn, user_id, new.id)
    if (session.title, session.metadata) != (new.title, new.metadata):
        raise Conflict(f"session {new.id} already exists with another title or metadata")
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
    """Append messages in order and remember each as a memory of the session."""
    async with conn.transaction():
        locked = await fetch_one(
            conn,
            scalar_row,
            "SELECT id FROM sessions WHERE user_id = %s AND id = %s FOR UPDATE",
            [user_id, session_id],
        )
        if locked is None:  # the lock also keeps concurrent appends in order
            raise NotFound(f"session {session_id} not found")
        written = await memories.insert_memories(
            conn,
            user_id,
            space,
            [
                NewMemory(
                    id=None,
                    content=m.content,
                    metadata={"role": m.role},
                    session_id=session_id,
                    importance=None,
                    ttl_seconds=None,
                )
                for m in new
            ],
            request_id=request_id,
        )
        added = await fetch_all(
            conn,
            class_row(Message),
            """
            INSERT INTO messages (user_id, session_id, seq, id, role, content, memory_id)
            SELECT %(user)s, %(session)s,
                   (SELECT coalesce(max(seq), 0) FROM messages
                    WHERE user_id = %(user)s AND session_id = %(session)s) + n.ord,
                   gen_random_uuid(), n.role, n.content, n.memory_id
            FROM unnest(%(roles)s::text[], %(contents)b::text[], %(memories)s::uuid[])
                 WITH ORDINALITY AS n(role, content, memory_id, ord)
            RETURNING id, session_id, seq, role, content, memory_id, created_at
            """,
            {
                "user": user_id,
                "session": session_id,
                "roles": [m.role for m in new],
                "contents": [m.content for m in new],
                "memories": [m.id for m in written.memories],
            },
        )
        await conn.execute(
            "UPDATE sessions SET updated_at = now() WHERE user_id = %s AND id = %s",
            [user_id, session_id],
        )
    return sorted(added, key=lambda message: message.seq), written.jobs


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
