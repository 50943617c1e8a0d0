"""Embedding a batch of jobs: claim in Postgres, encode outside any transaction, then store
what is still current; a failed batch is retried item by item, so one bad input fails alone."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from psycopg import AsyncConnection

from models.db.scope import ALL_USERS, run_scoped
from models.embedding.provider import Embedder
from models.embedding.spaces import Space
from models.errors import EmbeddingError
from models.jobs import outbox
from models.jobs.messages import Key
from models.observe import metrics
from models.observe.logs import request_context
from models.store import chunks
from models.types import Claim, Embedded
from worker.resources import Resources

log = logging.getLogger("engram.worker")


async def embed_batch(resources: Resources, space: Space, *, limit: int) -> int:
    """Claim up to ``limit`` waiting items, encode them outside any transaction, then store
    what is still current; return how many were claimed."""
    settings, pool = resources.settings, resources.pool
    claims = await run_scoped(
        pool, ALL_USERS, outbox.claim, space, limit=limit,
        lease_seconds=settings.worker.claim_seconds,
    )  # fmt: skip
    for item in claims:
        if item.attempts > settings.worker.max_attempts:  # it kept killing or stalling its workers
            reason = item.last_error or "the worker stopped while embedding it"
            gave_up = f"gave up after {settings.worker.max_attempts} attempts: {reason}"
            await _record_failure(resources, space, item, gave_up, permanent=True)
    work = [c for c in claims if c.attempts <= settings.worker.max_attempts]
    if not work:
        return len(claims)
    embedder = resources.embedders.get(space.name)
    if embedder is None:  # an external space: its clients send the vectors, never a worker
        for item in work:
            reason = f"space {space.name} is external: its clients send the vectors"
            await _record_failure(resources, space, item, reason, permanent=True)
        return len(claims)
    # lines logged while embedding (a provider's retries) name the request, if there is one
    with request_context(_shared_request_id(work)):
        vectors, failures = await embed_isolating_failures(embedder, work)
        ready = await run_scoped(pool, ALL_USERS, store, space, vectors)
    _log_embedded(space, work, vectors)
    metrics.EMBED_ITEMS.labels(space=space.name, outcome="ready").inc(ready)
    for item, error in failures:
        await _record_failure(resources, space, item, str(error), permanent=error.permanent)
    log.info(
        "space %s: %d ready, %d failed of %d claimed", space.name, ready, len(failures), len(claims)
    )
    return len(claims)


async def _record_failure(
    resources: Resources, space: Space, item: Claim, error: str, *, permanent: bool
) -> None:
    """Fail the item for good (a permanent error, or out of attempts), or schedule its retry
    after an exponential back-off; count and log it either way."""
    worker = resources.settings.worker
    await run_scoped(
        resources.pool,
        ALL_USERS,
        outbox.record_failure,
        space,
        item,
        error,
        permanent=permanent,
        max_attempts=worker.max_attempts,
        retry_in_seconds=worker.retry_base_seconds * 2 ** (item.attempts - 1),
    )
    _log_failure(space, item, error, gave_up=permanent or item.attempts >= worker.max_attempts)


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
    ready = await outbox.store_vectors(conn, space, vectors)
    await chunks.promote(conn, space, [Key(v.user_id, v.id) for v in vectors if v.kind == "chunk"])
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


def _embedded(items: Sequence[Claim], matrix: np.ndarray) -> list[Embedded]:
    return [
        Embedded(
            user_id=i.user_id, id=i.id, kind=i.kind, content_hash=i.content_hash, embedding=row
        )
        for i, row in zip(items, matrix, strict=True)
    ]
