"""What actors need, opened once per worker process: the pool, the models, a wake-up sender."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from models.db.pool import create_pool
from models.embedding.dimensions import verify_spaces
from models.embedding.provider import Embedder, start_embedders
from models.embedding.spaces import SpaceRegistry
from models.jobs.wakeups import WakeUps
from models.search.languages import verify_text_config
from models.settings import Settings


@dataclass(frozen=True)
class Resources:
    """The worker's open resources; actors reach them through ``current()``."""

    settings: Settings
    pool: AsyncConnectionPool
    spaces: SpaceRegistry
    embedders: dict[str, Embedder]
    wakeups: WakeUps


_current: Resources | None = None


def current() -> Resources:
    """The resources of this worker process (opened by ``ResourcesMiddleware`` at boot)."""
    if _current is None:
        raise RuntimeError("worker resources are not open: is ResourcesMiddleware installed?")
    return _current


async def open_resources(settings: Settings, spaces: SpaceRegistry) -> Resources:
    """Load the models, open the pool and check every space end to end; they become
    ``current()``. A space whose dims disagree anywhere stops here, before any write."""
    global _current
    database_url, redis_url = settings.require_urls()
    embedders = await start_embedders(spaces.all(), local=settings.encoder)
    pool = create_pool(
        database_url,
        min_size=1,
        max_size=settings.database.worker_pool_size,
        name="engram-worker",
        prepare_threshold=settings.database.prepare_threshold,
        text_config=settings.search.text_search_config,
    )
    try:
        await pool.open()
        await verify_spaces(pool, spaces.all(), embedders)
        await verify_text_config(pool, settings.search.text_search_config)
    except BaseException:
        await _close(embedders, pool)
        raise
    _current = Resources(settings, pool, spaces, embedders, WakeUps(redis_url))
    return _current


async def close_resources() -> None:
    """Close what ``open_resources`` opened (nothing if it was not)."""
    global _current
    if _current is None:
        return
    await _close(_current.embedders, _current.pool)
    _current.wakeups.close()
    _current = None


async def _close(embedders: dict[str, Embedder], pool: AsyncConnectionPool) -> None:
    for embedder in embedders.values():
        await embedder.close()
    await pool.close()
