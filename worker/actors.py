"""Actors: thin and idempotent, they take ids and find everything else in Postgres."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from uuid import UUID

import numpy as np

from models import jobs
from models.db import ALL_USERS, run_scoped
from models.embedding import Embedder
from models.errors import EmbeddingError
from models.spaces import Space
from models.types import Claim, Embedded
from worker.resources import Resources, current

log = logging.getLogger("engram.worker")


async def embed_items(space_name: str, keys: list[list[str]]) -> None:
    """Embed the pending items among ``keys`` ([user_id, id] pairs) into ``space_name``."""
    resources = current()
    space = resources.spaces.get(space_name)
    wanted = [(user_id, UUID(item_id)) for user_id, item_id in keys]
    step = resources.settings.encode_batch_size * 4
    for start in range(0, len(wanted), step):
        await embed_batch(resources, space, wanted[start : start + step])


async def embed_batch(resources: Resources, space: Space, keys: list[jobs.Key]) -> None:
    """Claim, encode outside any transaction, then store what is still current."""
    settings, pool = resources.settings, resources.pool
    claims = await run_scoped(
        pool, ALL_USERS, jobs.claim, keys, lease_seconds=settings.claim_seconds
    )
    for item in claims:
        if item.attempts > settings.max_attempts:  # it kept killing or stalling its workers
            reason = item.last_error or "the worker stopped while embedding it"
            await run_scoped(
                pool,
                ALL_USERS,
                jobs.record_failure,
                item,
                f"gave up after {settings.max_attempts} attempts: {reason}",
                permanent=True,
                max_attempts=settings.max_attempts,
                retry_in_seconds=0,
            )
    work = [c for c in claims if c.attempts <= settings.max_attempts]
    if not work:
        return
    embedder = resources.embedders[space.name]
    vectors, failures = await asyncio.to_thread(encode_isolating_failures, embedder, work)
    ready = await run_scoped(pool, ALL_USERS, jobs.store_vectors, space, vectors)
    for item, error in failures:
        await run_scoped(
            pool,
            ALL_USERS,
            jobs.record_failure,
            item,
            str(error),
            permanent=error.permanent,
            max_attempts=settings.max_attempts,
            retry_in_seconds=settings.retry_base_seconds * 2 ** (item.attempts - 1),
        )
    log.info(
        "space %s: %d ready, %d failed of %d claimed", space.name, ready, len(failures), len(claims)
    )


def encode_isolating_failures(
    embedder: Embedder, items: Sequence[Claim]
) -> tuple[list[Embedded], list[tuple[Claim, EmbeddingError]]]:
    """Encode a batch; if it fails, encode one by one so one bad item fails alone."""
    try:
        matrix = embedder.encode([item.content for item in items])
        return _embedded(items, matrix), []
    except EmbeddingError as error:
        if len(items) == 1:
            return [], [(items[0], error)]
    done: list[Embedded] = []
    failed: list[tuple[Claim, EmbeddingError]] = []
    for item in items:
        ok, bad = encode_isolating_failures(embedder, [item])
        done += ok
        failed += bad
    return done, failed


def _embedded(items: Sequence[Claim], matrix: np.ndarray) -> list[Embedded]:
    return [
        Embedded(user_id=i.user_id, id=i.id, content_hash=i.content_hash, embedding=row)
        for i, row in zip(items, matrix, strict=True)
    ]
