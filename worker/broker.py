"""The worker's broker: Redis, dramatiq's default middleware, asyncio, and our resources."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

from models.embedding.spaces import SpaceRegistry
from models.jobs.messages import EMBED_ACTOR, EMBED_QUEUE, FILL_ACTOR
from models.settings import Settings
from worker import actors
from worker.middleware.metrics import MetricsEndpoint
from worker.middleware.resources import ResourcesMiddleware


def build_broker(settings: Settings) -> RedisBroker:
    """A Redis broker with our actors declared on it, set as dramatiq's global broker."""
    _, redis_url = settings.require_urls()
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=redis_url,
        heartbeat_timeout=settings.broker.heartbeat_ms,
        socket_timeout=10,
        socket_connect_timeout=5,
    )
    broker.add_middleware(AsyncIO())
    broker.add_middleware(ResourcesMiddleware(settings, SpaceRegistry.configured(settings)))
    if settings.worker.metrics_address is not None:
        broker.add_middleware(MetricsEndpoint(*settings.worker.metrics_address))
    dramatiq.set_broker(broker)
    # Attempts are counted in Postgres; dramatiq retries only cover a database outage.
    dramatiq.actor(
        broker=broker,
        actor_name=EMBED_ACTOR,
        queue_name=EMBED_QUEUE,
        max_retries=5,
        min_backoff=1000,
        max_backoff=30_000,
    )(actors.embed_items)
    # A fill that dies is resumed by the sweep from its saved position.
    dramatiq.actor(broker=broker, actor_name=FILL_ACTOR, queue_name=EMBED_QUEUE, max_retries=0)(
        actors.fill_space
    )
    return broker
