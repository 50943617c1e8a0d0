"""A user as a whole: the users there are, with their counts, and erasing everything of
theirs (the right to be forgotten)."""

from __future__ import annotations

import msgspec
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, scalar_row

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import vector_table
from models.observe import audit
from models.store.items import LIVE_MEMORY, lock_writes
from models.types import Erased as Erased

# A user exists through what is theirs: items, sessions or a key of their own. Each table is
# read by a loose index scan (one index probe a user), so a page costs its users, not the
# items before them.
_OWNING_TABLES = ("memories", "documents", "sessions", "api_keys")


class UserSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A user and how much is theirs."""

    user_id: str
    memories: int
    documents: int
    sessions: int
    keys: int  # not revoked


async def list_users(
    conn: AsyncConnection, *, limit: int, after: str | None = None, prefix: str = ""
) -> list[UserSummary]:
    """Up to ``limit`` users in the order of their ids, from after ``after``, whose ids start
    with ``prefix``; each with their counts. Read across users (an admin's view)."""
    inclusive = after is None or after < prefix
    start = prefix if inclusive else str(after)
    ids = await fetch_all(conn, scalar_row, _user_ids(), _ids_params(start, inclusive, limit))
    ids = [user_id for user_id in ids if user_id.startswith(prefix)]
    if not ids:
        return []
    rows = await fetch_all(conn, class_row(UserSummary), _COUNTS, {"ids": ids})
    return sorted(rows, key=lambda row: row.user_id)


def _ids_params(start: str, inclusive: bool, limit: int) -> dict[str, object]:
    return {"start": start, "inclusive": inclusive, "limit": limit}


def _user_ids() -> sql.Composed:
    """The first ``limit`` distinct user ids at or after ``start`` across the owning tables."""
    scans = [
        sql.SQL(
            """(WITH RECURSIVE walk(user_id) AS (
                (SELECT user_id FROM {table}
                  WHERE user_id IS NOT NULL
                    AND (user_id > %(start)s OR (%(inclusive)s AND user_id = %(start)s))
                  ORDER BY user_id LIMIT 1)
                UNION ALL
                SELECT (SELECT t.user_id FROM {table} t
                         WHERE t.user_id > walk.user_id ORDER BY t.user_id LIMIT 1)
                  FROM walk WHERE walk.user_id IS NOT NULL)
            SELECT user_id FROM walk WHERE user_id IS NOT NULL LIMIT %(limit)s)"""
        ).format(table=sql.Identifier(table))
        for table in _OWNING_TABLES
    ]
    return sql.SQL(
        "SELECT user_id FROM ({}) ids GROUP BY user_id ORDER BY user_id LIMIT %(limit)s"
    ).format(sql.SQL(" UNION ALL ").join(scans))


_COUNTS = f"""
    SELECT u.user_id,
           (SELECT count(*) FROM memories m
             WHERE m.user_id = u.user_id AND {LIVE_MEMORY}) AS memories,
           (SELECT count(*) FROM documents d WHERE d.user_id = u.user_id) AS documents,
           (SELECT count(*) FROM sessions s WHERE s.user_id = u.user_id) AS sessions,
           (SELECT count(*) FROM api_keys k
             WHERE k.user_id = u.user_id AND k.revoked_at IS NULL) AS keys
      FROM unnest(%(ids)s::text[]) AS u(user_id)
"""


async def erase_user(
    conn: AsyncConnection, user_id: str, *, spaces: list[str], actor: str
) -> Erased:
    """Delete every memory, document, chunk, session, message, embedding job and vector of
    ``user_id`` in one transaction.

    ``spaces`` are the configured ones; spaces the user still has jobs in are added, so a
    vector is never left behind in a space no longer configured. The erasure is audited
    (who, whom, how much): the audit entry is all that remains. It takes the user's write
    locks first, so a write and an erasure of the same user never interleave: after an
    erasure the user has a write made meanwhile whole, or not at all.
    """
    async with conn.transaction():
        await lock_writes(conn, user_id, "memories", "documents")
        cur = await conn.execute("DELETE FROM memories WHERE user_id = %s", [user_id])
        memories = cur.rowcount
        cur = await conn.execute("DELETE FROM documents WHERE user_id = %s", [user_id])
        documents = cur.rowcount
        await conn.execute("DELETE FROM chunks WHERE user_id = %s", [user_id])
        await conn.execute("DELETE FROM document_batches WHERE user_id = %s", [user_id])
        await conn.execute("DELETE FROM messages WHERE user_id = %s", [user_id])
        await conn.execute("DELETE FROM sessions WHERE user_id = %s", [user_id])
        with_jobs = await fetch_all(
            conn,
            scalar_row,
            "WITH gone AS (DELETE FROM embed_state WHERE user_id = %s RETURNING space) "
            "SELECT DISTINCT space FROM gone",
            [user_id],
        )
        vectors = 0
        for space in sorted({*spaces, *with_jobs}):
            table = vector_table(space)
            if await fetch_one(conn, scalar_row, "SELECT to_regclass(%s)", [table]) is None:
                continue
            cur = await conn.execute(
                sql.SQL("DELETE FROM {} WHERE user_id = %s").format(sql.Identifier(table)),
                [user_id],
            )
            vectors += cur.rowcount
        await audit.record(
            conn,
            actor=actor,
            action="user.erase",
            target=user_id,
            user_id=user_id,
            memories=memories,
            documents=documents,
            vectors=vectors,
        )
    return Erased(user_id=user_id, memories=memories, documents=documents, vectors=vectors)
