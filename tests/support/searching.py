"""Searching as the API does, without HTTP, and indexing a user's vectors as the worker's
indexer does: for tests that choose the exact-search limit or watch the statements sent."""

from __future__ import annotations

import asyncio
from typing import Any

from models.db.pool import create_pool
from models.db.scope import read_batch, run_scoped
from models.embedding import indexing
from models.embedding.spaces import MINILM_384
from models.search.planner import search as search_items
from models.search.query import SearchQuery


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

    async def run() -> list[Any]:
        pool = create_pool(servers.app_url, min_size=1, max_size=1)
        await pool.open(wait=True)

        async def read(statements: Any, settings: Any) -> Any:
            (sent if sent is not None else []).extend(statements)
            (batches if batches is not None else []).append(list(statements))
            return await read_batch(pool, user, statements, settings)

        try:
            return await search_items(read, MINILM_384, user, query, **options)
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
