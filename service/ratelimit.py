"""Per-key rate limits in Redis, shared by every API process.

A fixed one-minute window per key counts cost units: 1 per request, plus the model time a
request spends (each text query and each written item). Past the limit: 429 with
``Retry-After`` until the window ends. If Redis is unreachable the limiter lets requests
through (logged): availability of the API matters more than the limit.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

from models.errors import RateLimited

log = logging.getLogger("engram.ratelimit")

WINDOW_SECONDS = 60


class RateLimiter:
    """Charges cost units to a key; raises RateLimited past ``per_minute`` (0: no limit)."""

    def __init__(self, redis_url: str, *, per_minute: int) -> None:
        self.per_minute = per_minute
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)

    async def charge(self, key_id: str, cost: int = 1) -> None:
        if self.per_minute <= 0 or cost <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        counter = f"engram:ratelimit:{key_id}:{window}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(counter, cost)
                pipe.expire(counter, WINDOW_SECONDS * 2)
                used, _ = await pipe.execute()
        except Exception as exc:
            log.warning("rate limiter unavailable (%s): letting the request through", exc)
            return
        if int(used) > self.per_minute:
            retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
            raise RateLimited(
                f"rate limit of {self.per_minute} units a minute exceeded", retry_after=retry_after
            )

    async def close(self) -> None:
        await self._redis.aclose()
