"""Searching as the API does, without HTTP, and indexing a user's vectors as the worker's
indexer does: for tests that choose the exact-search limit or watch the statements sent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from models.db.pool import create_pool
from models.db.scope import Reader, read_batch, run_scoped
from models.embedding import indexing
from models.embedding.spaces import MINILM_384
from models.search.context import Context, build_context
from models.search.planner import search as search_items
from models.search.query import SearchQuery

# how many statements a connection has prepared through ``models.db.batch``
PREPARED = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '\\_engram\\_%%'"


def search_directly(
    servers: Any,
    user: str,
    query: SearchQuery,
    sent: list[Any] | None = None,
    *,
    batches: list[list[Any]] | None = None,
    **options: Any,
) -> list[Any]:
    """``models.search.search`` as the API runs it (``read_batch``), on a pool of its own;
    the statements it sends are added to ``sent``, and each round trip's to ``batches``."""

    def work(read: Reader, _: Any) -> Any:
        return search_items(read, MINILM_384, user, query, **options)

    return _reading(servers, user, work, sent, batches)


def context_directly(
    servers: Any, user: str, query: SearchQuery, *, batches: list[list[Any]], **options: Any
) -> tuple[Context, int]:
    """``models.search.context.build_context`` as the API runs it, on a pool of one
    connection: the context, and how many statements that connection has prepared by then;
    each round trip's statements are added to ``batches``."""

    async def prepared(conn: Any) -> int:
        cur = await conn.execute(PREPARED)
        return int((await cur.fetchone())[0])

    async def work(read: Reader, pool: Any) -> tuple[Context, int]:
        context = await build_context(read, MINILM_384, user, query, **options)
        return context, await run_scoped(pool, user, prepared)

    return _reading(servers, user, work, None, batches)


def _reading(
    servers: Any,
    user: str,
    work: Callable[[Reader, Any], Awaitable[Any]],
    sent: list[Any] | None,
    batches: list[list[Any]] | None,
) -> Any:
    """``work(read, pool)``: ``read`` as the API's (``read_batch``) on ``pool``, one
    connection of its own; what ``read`` sends is added to ``sent``, and each round trip's
    statements to ``batches``."""

    async def run() -> Any:
        pool = create_pool(servers.app_url, min_size=1, max_size=1)
        await pool.open(wait=True)

        async def read(statements: Any, settings: Any) -> Any:
            (sent if sent is not None else []).extend(statements)
            (batches if batches is not None else []).append(list(statements))
            return await read_batch(pool, user, statements, settings)

        try:
            return await work(read, pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def index_vectors(servers: Any, user: str, *, batch: int = 500, batches: int | None = None) -> int:
    """Put ``user``'s memory vectors into the HNSW index, ``batch`` at a time (all of them,
    or ``batches`` batches), as the worker's indexer does for users above its exact-search
    limit; return how many."""

    async def run() -> int:
        pool = create_pool(servers.app_url, min_size=1, max_size=1)
        await pool.open(wait=True)
        total, rounds = 0, 0
        try:
            while batches is None or rounds < batches:
                done = await run_scoped(
                    pool, user, indexing.index_batch, MINILM_384, user, "memory", limit=batch
                )
                total, rounds = total + done, rounds + 1
                if not done:
                    break
            return total
        finally:
            await pool.close()

    return asyncio.run(run())
