"""Opens the worker's resources at boot, runs the sweep and the indexer beside the actors,
closes at shutdown."""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread
from dramatiq.middleware import Middleware

from models.embedding.spaces import SpaceRegistry
from models.settings import Settings
from worker.indexer import index_forever
from worker.resources import close_resources, current, open_resources
from worker.sweep import sweep_forever

log = logging.getLogger("engram.worker")

EXIT_CANNOT_START = 3  # the dramatiq main process stops when a worker process exits


class ResourcesMiddleware(Middleware):
    """Opens the pool and loads the models at worker boot; closes them at shutdown.

    It must come after dramatiq's AsyncIO middleware, whose event loop runs the pool.
    """

    def __init__(self, settings: Settings, spaces: SpaceRegistry) -> None:
        self.settings = settings
        self.spaces = spaces
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # dramatiq logs a middleware's failure and boots anyway: a worker without its
        # resources (or with a misconfigured space) must not run, so it exits instead.
        # SystemExit passes dramatiq's hooks (they catch Exception) and still lets its boot
        # tell the main process that this one is done booting, so the main process sees
        # the exit at once (os._exit skipped that: the main process waited 30 s for it)
        loop = _event_loop()
        try:
            opened = loop.run_coroutine(open_resources(self.settings, self.spaces))
        except Exception as exc:
            log.critical("worker cannot start: %s", exc)
            loop.stop()  # type: ignore[no-untyped-call]  # not a daemon: the exit would wait
            raise SystemExit(EXIT_CANNOT_START) from None
        log.info("worker resources open: spaces %s", ", ".join(opened.embedders))

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=loop_forever,
                args=(current(), _event_loop(), self._stop),
                name=name,
                daemon=True,
            )
            for name, loop_forever in (
                ("engram-sweeper", sweep_forever),
                ("engram-indexer", index_forever),
            )
        ]
        for thread in self._threads:
            thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # "after" hooks run in reverse order: the AsyncIO event loop is still up here.
        _event_loop().run_coroutine(close_resources())


def _event_loop() -> EventLoopThread:
    loop = get_event_loop_thread()
    if loop is None:
        raise RuntimeError("dramatiq's AsyncIO middleware must come before ResourcesMiddleware")
    return loop
