"""The worker's own /metrics, for deployments where it shares no directory with the API."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from models.observe import metrics

log = logging.getLogger("engram.worker")


class MetricsEndpoint(Middleware):
    """Serves this worker process's metrics on ``host:port`` once the worker has booted."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        registry = REGISTRY
        directory = metrics.multiprocess_dir()
        if directory is not None:  # values are in files there, not in this process
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        start_http_server(self.port, addr=self.host, registry=registry)
        log.info("worker metrics on http://%s:%d/metrics", self.host, self.port)
