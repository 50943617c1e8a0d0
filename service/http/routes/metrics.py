"""GET /metrics: Prometheus text format, for the metrics token or an admin key
(``ENGRAM_METRICS_TOKEN``; ``ENGRAM_METRICS_PUBLIC`` opens it)."""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Controller, Response, get

from models.jobs import status
from models.observe import metrics
from service.http.auth import reads_metrics
from service.http.errors import ERRORS
from service.http.runtime import Runtime

log = logging.getLogger("engram.metrics")

# The state gauges need a pass over embed_state: scrapes within this many seconds share one.
STATE_CACHE_SECONDS = 5.0


class MetricsController(Controller):
    tags = ["health"]

    @get(
        "/metrics",
        media_type=metrics.CONTENT_TYPE,
        cache_control=None,
        guards=[reads_metrics],
        responses=ERRORS,
    )
    async def metrics(self, runtime: Runtime) -> Response[bytes]:
        """Counters and histograms of the API and every worker process, and the items and
        queue depth read at scrape time (docs/operations.md lists every series)."""
        return Response(metrics.exposition(await _state(runtime)), media_type=metrics.CONTENT_TYPE)


async def _state(runtime: Runtime) -> list[Any]:
    now = time.monotonic()
    if runtime.scraped is not None and now - runtime.scraped[0] < STATE_CACHE_SECONDS:
        return runtime.scraped[1]
    families = await _read_state(runtime)
    runtime.scraped = (now, families)
    return families


async def _read_state(runtime: Runtime) -> list[Any]:
    items = metrics.gauge(
        "engram_items", "Items by embedding space and status", ["space", "status"]
    )
    oldest = metrics.gauge(
        "engram_items_oldest_pending_seconds",
        "Age of the oldest pending item of each space (0: none pending)",
        ["space"],
    )
    queue = metrics.gauge(
        "engram_queue_messages",
        "Wake-up messages in the broker by queue and state (waiting, in_flight, delayed, dead)",
        ["queue", "state"],
    )
    read_ok = metrics.gauge(
        "engram_state_read_ok", "1 if this scrape could read the source, else 0", ["source"]
    )
    spaces = {name: status.SpaceStatus(space=name) for name in runtime.spaces.names()}
    try:
        spaces |= {s.space: s for s in await runtime.across_users(status.space_status)}
        read_ok.add_metric(["database"], 1)
    except Exception as exc:
        log.warning("metrics: embed_state not read: %s", exc)
        read_ok.add_metric(["database"], 0)
        spaces = {}
    for name, counts in sorted(spaces.items()):
        for state in ("pending", "ready", "failed"):
            items.add_metric([name, state], getattr(counts, state))
        oldest.add_metric([name], counts.oldest_pending_seconds or 0.0)
    depth = await runtime.wakeups.queue_depth()
    read_ok.add_metric(["broker"], int(depth is not None))
    if depth is not None:
        for state in ("waiting", "in_flight", "delayed", "dead"):
            queue.add_metric([depth.queue, state], getattr(depth, state))
    return [items, oldest, queue, read_ok]
