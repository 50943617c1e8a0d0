"""Prometheus metrics: what the API and the workers count, and the exposition at /metrics.

Counters and histograms are recorded where things happen: HTTP requests in the API, encode
calls and provider trouble in the worker processes. With ``PROMETHEUS_MULTIPROC_DIR`` set
(``engram run`` sets it for the processes it starts), each process writes its values to
files there and the API's /metrics adds up every process's files; without it, /metrics shows
the API process's own values. Gauges of state (items by status, queue depth) are read at
scrape time by the API, never recorded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_REQUEST_DURATION = Histogram(
    "engram_http_request_duration_seconds",
    "HTTP requests by method, route template and status, and how long they took",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
HTTP_UNMATCHED = Counter(
    "engram_http_unmatched_requests",
    "HTTP requests that matched no route (404 and 405 from the router), by status",
    ["status"],
)
REPLICA_READS = Counter(
    "engram_replica_reads",
    "Reads of the API with a read replica configured, by where they ran and why "
    "(replica, replica_after_wait, primary_write_not_replayed, primary_replica_unavailable, "
    "primary_positions_unknown, primary_after_replica_error)",
    ["outcome"],
)
ENCODE_BATCH_SIZE = Histogram(
    "engram_encode_batch_size",
    "Texts per encode call in the workers, by space",
    ["space"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
ENCODE_DURATION = Histogram(
    "engram_encode_duration_seconds",
    "How long an encode call took in the workers, by space",
    ["space"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EMBED_ITEMS = Counter(
    "engram_embed_items",
    "Items a worker finished an attempt at, by space and outcome (ready, retry, failed)",
    ["space", "outcome"],
)
PROVIDER_ERRORS = Counter(
    "engram_provider_errors",
    "Failed requests to an embeddings provider, by space and kind",
    ["space", "kind"],
)
PROVIDER_RETRIES = Counter(
    "engram_provider_retries",
    "Requests to an embeddings provider sent again after a failure, by space and kind",
    ["space", "kind"],
)


def multiprocess_dir() -> Path | None:
    """Where the processes' metric files are, if metrics are shared between processes."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def ensure_multiprocess_dir() -> None:
    """Create the shared directory if one is configured and missing (before any value)."""
    directory = multiprocess_dir()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)


def reset_multiprocess_dir(path: Path) -> None:
    """An empty directory for a new set of processes: files of processes gone are removed."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)


class Snapshot(Collector):
    """Gauges read at scrape time, handed over ready-made."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def gauge(name: str, documentation: str, labels: Sequence[str]) -> GaugeMetricFamily:
    """An empty gauge family, to fill with ``add_metric(label_values, value)``."""
    return GaugeMetricFamily(name, documentation, labels=labels)


def exposition(state: Sequence[Metric]) -> bytes:
    """Every process's counters and histograms, then the scrape-time gauges ``state``."""
    recorded = REGISTRY
    directory = multiprocess_dir()
    if directory is not None:
        recorded = CollectorRegistry()
        MultiProcessCollector(recorded, path=str(directory))  # type: ignore[no-untyped-call]
    scraped = CollectorRegistry()
    scraped.register(Snapshot(state))
    return generate_latest(recorded) + generate_latest(scraped)
