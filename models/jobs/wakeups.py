"""Wake-up messages to workers, sent by actor name: by the HTTP edge for new work, by the
worker's sweep and fills for overdue work. Neither edge imports the other's code.

A message is only a hint. The item is already committed as ``pending`` in Postgres, so a
message that cannot be sent (Redis down) is logged and the worker's sweep finds the item.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from models.jobs.messages import EMBED_ACTOR, EMBED_QUEUE, FILL_ACTOR, MESSAGE_SIZE, Job
from models.jobs.status import QueueDepth

log = logging.getLogger("engram.wakeups")


class WakeUps:
    """Sends ``embed_items`` and ``fill_space`` messages through Redis."""

    def __init__(self, redis_url: str) -> None:
        # No connection is made here; the client connects on first use.
        self.broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=redis_url, middleware=[], socket_timeout=2, socket_connect_timeout=2
        )

    async def _send(self, actor: str, args: tuple[Any, ...]) -> bool:
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=EMBED_QUEUE, actor_name=actor, args=args, kwargs={}, options={}
        )
        try:
            await asyncio.to_thread(self.broker.enqueue, message)
        except Exception as exc:
            log.warning("%s message not sent (%s); the sweep will pick it up", actor, exc)
            return False
        return True

    async def embed(self, jobs: list[Job]) -> None:
        """Ask workers to embed ``jobs`` (space, user_id, id): a message per space and
        ``MESSAGE_SIZE`` ids.

        A message that cannot be sent (broker unreachable) is logged and left to the sweep.
        """
        by_space: dict[str, list[list[str]]] = {}
        for space, user_id, item_id in jobs:
            by_space.setdefault(space, []).append([user_id, str(item_id)])
        for space, keys in by_space.items():
            for start in range(0, len(keys), MESSAGE_SIZE):
                await self._send(EMBED_ACTOR, (space, keys[start : start + MESSAGE_SIZE]))

    async def fill(self, space: str) -> bool:
        """Ask a worker to fill ``space`` with every item (the sweep resumes it anyway)."""
        return await self._send(FILL_ACTOR, (space,))

    async def queue_depth(self) -> QueueDepth | None:
        """How many messages the embeddings queue holds, by state; None if Redis is down."""

        def read() -> QueueDepth:
            # dramatiq's Redis layout: a list of waiting ids and a hash of every message per
            # queue, the same for its delay queue (.DQ), and a sorted set of dead ones (.XQ)
            queue = f"{self.broker.namespace}:{EMBED_QUEUE}"
            pipe = self.broker.client.pipeline(transaction=False)
            pipe.llen(queue)
            pipe.hlen(f"{queue}.msgs")
            pipe.hlen(f"{queue}.DQ.msgs")
            pipe.zcard(f"{queue}.XQ")
            waiting, held, delayed, dead = (int(n) for n in pipe.execute())
            return QueueDepth(
                queue=EMBED_QUEUE,
                waiting=waiting,
                in_flight=max(0, held - waiting),
                delayed=delayed,
                dead=dead,
            )

        try:
            return await asyncio.to_thread(read)
        except Exception as exc:
            log.warning("queue depth not read: %s", exc)
            return None

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self.broker.client.ping))
        except Exception:
            return False

    def close(self) -> None:
        self.broker.client.close()
