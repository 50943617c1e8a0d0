"""Per-key rate limits in Redis, shared by every API process.

A fixed one-minute window per key counts cost units: 1 per request, plus the model time a
request spends (each text query and each written item). Past the limit: 429 with
``Retry-After`` until the window ends. If Redis is unreachable the limiter lets requests
through (logged): availability of the API matters more than the limit.

Asking Redis on every request would cost a busy key a round trip each time. So a charge that
Redis admits also takes a small *lease* for the same window: up to a fiftieth of the limit
more, counted in Redis at once as if spent, which this process then spends without asking.
Leased units are never given to anyone else, so a limit is never exceeded; the price is that
units one process leased and did not spend before the window ended are lost to the others
(at most a fiftieth of the limit per process and window). Near the limit a lease shrinks to
what is left, so one process alone gets exactly its limit; under a fiftieth of the limit (a
limit below 50) nothing is leased.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from models.errors import RateLimited

log = logging.getLogger("engram.ratelimit")

WINDOW_SECONDS = 60
LEASE_SHARE = 50  # a lease is at most this share of the limit (1/50)
# Atomically: charge the cost (a refused request counts too); set the expiry when this
# window's first charge creates the counter; if the charge fits, lease up to ARGV[2] more
# of what is left. Answers {total after the charge, units leased}.
_CHARGE = """
local cost, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local used = redis.call('INCRBY', KEYS[1], cost)
if used == cost then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if used > limit then return {used, 0} end
lease = math.min(lease, limit - used)
if lease > 0 then redis.call('INCRBY', KEYS[1], lease) end
return {used, lease}
"""


@dataclass
class _Lease:
    window: int
    units: int


class RateLimiter:
    """Charges cost units to a key; raises RateLimited past ``per_minute`` (0: no limit)."""

    def __init__(self, redis_url: str, *, per_minute: int) -> None:
        self.per_minute = per_minute
        self.lease_units = per_minute // LEASE_SHARE
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self._charge = self._redis.register_script(_CHARGE)
        self._leases: dict[str, _Lease] = {}

    async def charge(self, key_id: str, cost: int = 1) -> None:
        await self.charge_redis(key_id, self.spend_lease(key_id, cost))

    def spend_lease(self, key_id: str, cost: int = 1) -> int:
        """Spends what this process holds leased for the key; answers the rest of ``cost``,
        which ``charge_redis`` must charge (0: nothing left to charge, no need to wait)."""
        if self.per_minute <= 0 or cost <= 0:
            return 0
        lease = self._leases.get(key_id)
        if lease is not None and lease.window == int(time.time() // WINDOW_SECONDS):
            covered = min(cost, lease.units)  # already counted in Redis
            lease.units -= covered
            cost -= covered
        return cost

    async def charge_redis(self, key_id: str, cost: int) -> None:
        """Charges ``cost`` in Redis (leasing more when it fits); past the limit, raises."""
        if cost <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        counter = f"engram:ratelimit:{key_id}:{window}"
        try:
            used, leased = await self._charge(
                keys=[counter],
                args=[cost, self.lease_units, WINDOW_SECONDS * 2, self.per_minute],
            )
        except Exception as exc:
            log.warning("rate limiter unavailable (%s): letting the request through", exc)
            return
        if int(leased) > 0:
            self._keep(key_id, _Lease(window, int(leased)))
        if int(used) > self.per_minute:
            retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
            raise RateLimited(
                f"rate limit of {self.per_minute} units a minute exceeded", retry_after=retry_after
            )

    def _keep(self, key_id: str, lease: _Lease) -> None:
        held = self._leases.get(key_id)
        if held is not None and held.window == lease.window:  # two charges leased at once
            held.units += lease.units
            return
        if len(self._leases) > 10_000:  # keys seen in earlier windows hold nothing usable
            self._leases = {k: v for k, v in self._leases.items() if v.window == lease.window}
        self._leases[key_id] = lease

    async def close(self) -> None:
        await self._redis.aclose()
