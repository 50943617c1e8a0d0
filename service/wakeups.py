"""Wake-up messages to the worker, sent by actor name: the service never imports the worker.

A message is only a hint. The item is already committed as ``pending`` in Postgres, so a
message that cannot be sent (Redis down) is logged and the worker's sweep finds the item.
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from models.jobs import EMBED_ACTOR, EMBED_QUEUE, Key

log = logging.getLogger("engram.wakeups")


class WakeUps:
    """Sends ``embed_items`` messages through Redis."""

    def __init__(self, redis_url: str) -> None:
        # No connection is made here; the client connects on first use.
        self.broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=redis_url, middleware=[], socket_timeout=2, socket_connect_timeout=2
        )

    async def embed(self, space: str, keys: list[Key]) -> bool:
        """Ask a worker to embed ``keys``; False (logged) if the broker is unreachable."""
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=EMBED_QUEUE,
            actor_name=EMBED_ACTOR,
            args=(space, [[user_id, str(item_id)] for user_id, item_id in keys]),
            kwargs={},
            options={},
        )
        try:
            await asyncio.to_thread(self.broker.enqueue, message)
        except Exception as exc:
            log.warning("wake-up not sent (%s); the sweep will pick the items up", exc)
            return False
        return True

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self.broker.client.ping))
        except Exception:
            return False

    def close(self) -> None:
        self.broker.client.close()
