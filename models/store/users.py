"""A user as a whole: erasing everything of theirs (the right to be forgotten)."""

from __future__ import annotations

from psycopg import AsyncConnection, sql
from psycopg.rows import scalar_row

from models.db.rows import fetch_all, fetch_one
from models.embedding.spaces import vector_table
from models.observe import audit
from models.store.items import lock_writes
from models.types import Erased as Erased


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
