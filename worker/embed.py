"""Embedding a batch of jobs: claim in Postgres, encode outside any transaction, then store
what is still current; a failed batch is retried item by item, so one bad input fails alone.

The local model encodes one call at a time in a process, on all the machine's cores, so a
chat's memory must not wait behind a bulk batch:
- in a process, the model's turns go to interactive encodes before bulk ones (``Turns``);
- a bulk batch is encoded a slice at a time, and before each slice it looks at the
  interactive lane in the outbox (any process's work): when some waits with no worker on it,
  the batch stops, stores what it encoded and gives the rest back, so the next claim
  (interactive first) takes that work; while some is being embedded, in this process or
  another, the batch pauses, so that encode has the cores to itself.
A batch pauses at most ``PAUSE_MAX_SECONDS`` in all (a worker killed mid-claim holds its
lease for minutes), and its first slice never stops it: every batch gets something done.
An interactive item waits for about one slice, and bulk work goes on whenever none waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import numpy as np
from psycopg import AsyncConnection

from models.db.scope import ALL_USERS, run_scoped
from models.embedding.local import LocalEmbedder
from models.embedding.provider import Embedder
from models.embedding.spaces import Space
from models.errors import EmbeddingError
from models.jobs import outbox
from models.jobs.messages import Key
from models.observe import metrics
from models.observe.logs import request_context
from models.store import chunks
from models.types import Claim, Embedded, Lane
from worker.resources import Resources

log = logging.getLogger("engram.worker")

BULK_SLICE = 8  # texts of a bulk batch per model call, on the local model (as fast per text as 16)
PAUSE_SECONDS = 0.02  # between looks at the outbox while interactive work is embedded
PAUSE_MAX_SECONDS = 1.0  # a bulk batch's pauses in all


class Turns:
    """The local model's turns in this process (its actors share one event loop): one encode
    at a time, the interactive lane's first, each lane's in the order they asked."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {
            "interactive": deque(),
            "bulk": deque(),
        }

    @contextlib.asynccontextmanager
    async def turn(self, lane: Lane) -> AsyncIterator[None]:
        if self._busy:
            granted = asyncio.get_running_loop().create_future()
            self._waiting[lane].append(granted)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.cancelled():
                    with contextlib.suppress(ValueError):  # unless passed over already
                        self._waiting[lane].remove(granted)
                else:  # the turn came as the wait was cancelled: it goes to the next
                    self._pass_on()
                raise
        self._busy = True
        try:
            yield
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        for lane in outbox.LANES:
            while self._waiting[lane]:
                granted = self._waiting[lane].popleft()
                if not granted.cancelled():
                    granted.set_result(None)  # still busy: the turn is theirs
                    return
        self._busy = False


TURNS = Turns()
QUIET = outbox.InteractiveWork(waiting=False, running=False)


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

    def look() -> Awaitable[outbox.InteractiveWork]:
        return run_scoped(pool, ALL_USERS, outbox.interactive_work, space.name)

    # lines logged while embedding (a provider's retries) name the request, if there is one
    with request_context(_shared_request_id(work)):
        vectors, failures, rest = await embed_isolating_failures(
            embedder, work, lane=work[0].lane, look=look
        )
        ready = await run_scoped(pool, ALL_USERS, store, space, vectors)
    if rest:  # interactive work waits: the rest goes back, its attempt not counted
        await run_scoped(pool, ALL_USERS, outbox.release, space, rest)
    _log_embedded(space, work, vectors)
    metrics.EMBED_ITEMS.labels(space=space.name, outcome="ready").inc(ready)
    for item, error in failures:
        await _record_failure(resources, space, item, str(error), permanent=error.permanent)
    log.info(
        "space %s: %d ready, %d failed, %d given back of %d claimed",
        space.name, ready, len(failures), len(rest), len(claims),
    )  # fmt: skip
    return len(claims) - len(rest)


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


Look = Callable[[], Awaitable[outbox.InteractiveWork]]


async def embed_isolating_failures(
    embedder: Embedder,
    items: Sequence[Claim],
    *,
    lane: Lane = "interactive",
    look: Look | None = None,
) -> tuple[list[Embedded], list[tuple[Claim, EmbeddingError]], list[Claim]]:
    """Embed a batch (a claim's items are of one lane); if it fails, embed one by one so
    one bad item fails alone. Returns the vectors, the failures, and the items a bulk batch
    left when ``look`` found interactive work waiting between its slices."""
    try:
        matrix = await _encode_in_turn(embedder, [item.content for item in items], lane, look)
        return _embedded(items[: len(matrix)], matrix), [], list(items[len(matrix) :])
    except EmbeddingError as error:
        if len(items) == 1:
            return [], [(items[0], error)], []
    done: list[Embedded] = []
    failed: list[tuple[Claim, EmbeddingError]] = []
    for item in items:
        ok, bad, _ = await embed_isolating_failures(embedder, [item], lane=lane)
        done += ok
        failed += bad
    return done, failed, []


async def _encode_in_turn(
    embedder: Embedder, texts: list[str], lane: Lane, look: Look | None = None
) -> np.ndarray:
    """``_encode``, interactive work first (this module's docstring). A bulk batch on the
    local model may end early, when ``look`` finds interactive work waiting before a slice
    after the first: the answer then holds the vectors of the texts encoded. A remote
    provider's batches are sent whole: its requests do not compete for this machine's
    cores."""
    if not isinstance(embedder, LocalEmbedder):
        return await _encode(embedder, texts)
    if lane == "interactive":
        async with TURNS.turn(lane):
            return await _encode(embedder, texts)
    parts: list[np.ndarray] = []
    paused = 0.0
    for start in range(0, len(texts), BULK_SLICE):
        while True:
            async with TURNS.turn(lane):
                work = await look() if look is not None else QUIET
                if work.waiting and parts:  # stop: the rest goes back
                    return np.concatenate(parts)
                giving_way = (work.waiting or work.running) and paused < PAUSE_MAX_SECONDS
                if not giving_way:
                    parts.append(await _encode(embedder, texts[start : start + BULK_SLICE]))
                    break
            await asyncio.sleep(PAUSE_SECONDS)
            paused += PAUSE_SECONDS
    return np.concatenate(parts)


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
