"""What actors need, opened once per worker process at boot: the pool and the models."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware
from psycopg_pool import AsyncConnectionPool

from models.db.pool import create_pool
from models.embedding.dimensions import verify_spaces
from models.embedding.provider import Embedder, start_embedders
from models.embedding.spaces import SpaceRegistry
from models.settings import Settings

log = logging.getLogger("engram.worker")

EXIT_CANNOT_START = 3  # the dramatiq main process stops when a worker process exits


@dataclass(frozen=True)
class Resources:
    """The worker's open resources; actors reach them through ``current()``."""

    settings: Settings
    pool: AsyncConnectionPool
    spaces: SpaceRegistry
    embedders: dict[str, Embedder]


_current: Resources | None = None


def current() -> Resources:
    """The resources of this worker process (set by ``ResourcesMiddleware`` at boot)."""
    if _current is None:
        raise RuntimeError("worker resources are not open: is ResourcesMiddleware installed?")
    return _current


class ResourcesMiddleware(Middleware):
    """Opens the pool and loads the models at worker boot; closes them at shutdown.

    It must come after dramatiq's AsyncIO middleware, whose event loop runs the pool.
    """

    def __init__(self, settings: Settings, spaces: SpaceRegistry) -> None:
        self.settings = settings
        self.spaces = spaces
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # dramatiq logs a middleware's failure and boots anyway: a worker without its
        # resources (or with a misconfigured space) must not run, so it exits instead
        try:
            self._open()
        except Exception as exc:
            log.critical("worker cannot start: %s", exc)
            logging.shutdown()
            os._exit(EXIT_CANNOT_START)

    def _open(self) -> None:
        global _current
        database_url, _ = self.settings.require_urls()
        loop = _event_loop()
        embedders = loop.run_coroutine(
            start_embedders(self.spaces.all(), local=self.settings.encoder)
        )
        pool = create_pool(
            database_url,
            min_size=1,
            max_size=self.settings.worker_pool_size,
            name="engram-worker",
            prepare_threshold=self.settings.prepare_threshold,
        )
        loop.run_coroutine(pool.open())
        # a space whose dims disagree anywhere stops the worker here, before any write
        loop.run_coroutine(verify_spaces(pool, embedders))
        _current = Resources(self.settings, pool, self.spaces, embedders)
        log.info("worker resources open: spaces %s", ", ".join(embedders))

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from worker.reconciler import sweep_forever  # actors need the broker

        self._stop.clear()
        self._sweeper = threading.Thread(
            target=sweep_forever, args=(current(), self._stop), name="engram-sweeper", daemon=True
        )
        self._sweeper.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=30)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # "after" hooks run in reverse order: the AsyncIO event loop is still up here.
        global _current
        if _current is not None:
            for embedder in _current.embedders.values():
                _event_loop().run_coroutine(embedder.close())
            _event_loop().run_coroutine(_current.pool.close())
            _current = None


def _event_loop() -> dramatiq.asyncio.EventLoopThread:
    loop = get_event_loop_thread()
    if loop is None:
        raise RuntimeError("dramatiq's AsyncIO middleware must come before ResourcesMiddleware")
    return loop
