"""Actors: thin and idempotent, they take ids and find everything else in Postgres."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from uuid import UUID

import numpy as np
from psycopg import AsyncConnection

from models.db.scope import ALL_USERS, run_scoped
from models.embedding.provider import Embedder
from models.embedding.spaces import Space
from models.errors import EmbeddingError
from models.jobs import fills, messages
from models.jobs import outbox as jobs
from models.observe import metrics
from models.observe.logs import request_context
from models.store import documents
from models.types import Claim, Embedded
from worker.resources import Resources, current

log = logging.getLogger("engram.worker")

MESSAGE_SIZE = 256  # ids per wake-up message
FILL_BATCH = 2000  # items a fill step gives a job, in one transaction


async def embed_items(space_name: str, keys: list[list[str]]) -> None:
    """Embed the pending items among ``keys`` ([user_id, id] pairs) into ``space_name``."""
    resources = current()
    if space_name not in resources.spaces.names():
        # a worker configured with that space (its sweep) will take these jobs
        log.warning("message for space %s skipped: not configured here", space_name)
        return
    space = resources.spaces.get(space_name)
    wanted = [(user_id, UUID(item_id)) for user_id, item_id in keys]
    step = resources.settings.encode_batch_size * 4
    for start in range(0, len(wanted), step):
        await embed_batch(resources, space, wanted[start : start + step])


async def embed_batch(resources: Resources, space: Space, keys: list[messages.Key]) -> None:
    """Claim, encode outside any transaction, then store what is still current."""
    settings, pool = resources.settings, resources.pool
    claims = await run_scoped(
        pool, ALL_USERS, jobs.claim, space, keys, lease_seconds=settings.claim_seconds
    )
    for item in claims:
        if item.attempts > settings.max_attempts:  # it kept killing or stalling its workers
            reason = item.last_error or "the worker stopped while embedding it"
            gave_up = f"gave up after {settings.max_attempts} attempts: {reason}"
            await run_scoped(
                pool,
                ALL_USERS,
                jobs.record_failure,
                space,
                item,
                gave_up,
                permanent=True,
                max_attempts=settings.max_attempts,
                retry_in_seconds=0,
            )
            _log_failure(space, item, gave_up, gave_up=True)
    work = [c for c in claims if c.attempts <= settings.max_attempts]
    if not work:
        return
    embedder = resources.embedders[space.name]
    # lines logged while embedding (a provider's retries) name the request, if there is one
    with request_context(_shared_request_id(work)):
        vectors, failures = await embed_isolating_failures(embedder, work)
        ready = await run_scoped(pool, ALL_USERS, store, space, vectors)
    _log_embedded(space, work, vectors)
    metrics.EMBED_ITEMS.labels(space=space.name, outcome="ready").inc(ready)
    for item, error in failures:
        await run_scoped(
            pool,
            ALL_USERS,
            jobs.record_failure,
            space,
            item,
            str(error),
            permanent=error.permanent,
            max_attempts=settings.max_attempts,
            retry_in_seconds=settings.retry_base_seconds * 2 ** (item.attempts - 1),
        )
        final = error.permanent or item.attempts >= settings.max_attempts
        _log_failure(space, item, str(error), gave_up=final)
    log.info(
        "space %s: %d ready, %d failed of %d claimed", space.name, ready, len(failures), len(claims)
    )


def _shared_request_id(items: Sequence[Claim]) -> str | None:
    found = {item.request_id for item in items}
    return found.pop() if len(found) == 1 else None


def _log_embedded(space: Space, work: Sequence[Claim], vectors: Sequence[Embedded]) -> None:
    """One line per request whose items were embedded and stored."""
    done = {(v.user_id, v.id) for v in vectors}
    by_request: dict[str | None, int] = {}
    for item in work:
        if (item.user_id, item.id) in done:
            by_request[item.request_id] = by_request.get(item.request_id, 0) + 1
    for request_id, count in by_request.items():
        log.info(
            "embedded and stored %d %s in %s",
            count,
            "item" if count == 1 else "items",
            space.name,
            extra={"request_id": request_id, "space": space.name, "items": count},
        )


def _log_failure(space: Space, item: Claim, error: str, *, gave_up: bool) -> None:
    metrics.EMBED_ITEMS.labels(space=space.name, outcome="failed" if gave_up else "retry").inc()
    log.warning(
        "item %s %s: %s",
        item.id,
        "failed for good" if gave_up else "will be retried",
        error,
        extra={
            "request_id": item.request_id,
            "space": space.name,
            "item_id": str(item.id),
            "attempt": item.attempts,
        },
    )


async def store(conn: AsyncConnection, space: Space, vectors: list[Embedded]) -> int:
    """Store vectors, and make live the document versions whose last chunk this was."""
    ready = await jobs.store_vectors(conn, space, vectors)
    await documents.promote(conn, space, [(v.user_id, v.id) for v in vectors if v.kind == "chunk"])
    return ready


async def embed_isolating_failures(
    embedder: Embedder, items: Sequence[Claim]
) -> tuple[list[Embedded], list[tuple[Claim, EmbeddingError]]]:
    """Embed a batch; if it fails, embed one by one so one bad item fails alone."""
    try:
        matrix = await _encode(embedder, [item.content for item in items])
        return _embedded(items, matrix), []
    except EmbeddingError as error:
        if len(items) == 1:
            return [], [(items[0], error)]
    done: list[Embedded] = []
    failed: list[tuple[Claim, EmbeddingError]] = []
    for item in items:
        ok, bad = await embed_isolating_failures(embedder, [item])
        done += ok
        failed += bad
    return done, failed


async def _encode(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """``embedder.embed``, measured: every call counts, failed ones too."""
    started = time.perf_counter()
    try:
        return await embedder.embed(texts)
    finally:
        space = embedder.space.name
        metrics.ENCODE_BATCH_SIZE.labels(space=space).observe(len(texts))
        metrics.ENCODE_DURATION.labels(space=space).observe(time.perf_counter() - started)


async def fill_space(space_name: str) -> None:
    """Give every existing item a job in ``space_name``, batch by batch, waking workers."""
    resources = current()
    if space_name not in resources.spaces.names():
        log.warning("fill of %s skipped: this worker does not have that space", space_name)
        return
    await fill_some(resources, space_name, batches=None)


async def fill_some(resources: Resources, space_name: str, *, batches: int | None) -> int:
    """Run up to ``batches`` fill steps (all, if None); return how many jobs were made."""
    from worker.broker import send_embed  # the actor is declared there

    made = 0
    while batches is None or batches > 0:
        created = await run_scoped(
            resources.pool, ALL_USERS, fills.fill_step, space_name, limit=FILL_BATCH
        )
        if created is None:
            break
        for start in range(0, len(created), MESSAGE_SIZE):
            send_embed(space_name, [[u, str(i)] for u, i in created[start : start + MESSAGE_SIZE]])
        made += len(created)
        batches = None if batches is None else batches - 1
    return made


def _embedded(items: Sequence[Claim], matrix: np.ndarray) -> list[Embedded]:
    return [
        Embedded(
            user_id=i.user_id, id=i.id, kind=i.kind, content_hash=i.content_hash, embedding=row
        )
        for i, row in zip(items, matrix, strict=True)
    ]
