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

What is left is told to the client (``RateLimit-*`` headers, ``quota``) from what this
process learned at its last charge in Redis, without asking again: the window's count there,
less what this process holds leased and has not spent (those units are still the key's to
spend here). Charges through other processes since show at this process's next charge in
Redis, at the latest when its lease is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from models.errors import RateLimited

log = logging.getLogger("engram.ratelimit")

WINDOW_SECONDS = 60
LEASE_SHARE = 50  # a lease is at most this share of the limit (1/50)
MAX_KNOWN = 10_000  # keys remembered; past that, those of earlier windows go
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
class _Window:
    """What this process knows of a key's window: its count in Redis at the last charge
    (leases included) and the units it holds leased and unspent."""

    window: int
    counted: int = 0
    leased: int = 0


class RateLimiter:
    """Charges cost units to a key; raises RateLimited past ``per_minute`` (0: no limit)."""

    def __init__(
        self, redis_url: str, *, per_minute: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self.lease_units = per_minute // LEASE_SHARE
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self._charge = self._redis.register_script(_CHARGE)
        self._windows: dict[str, _Window] = {}

    async def charge(self, key_id: str, cost: int = 1) -> None:
        await self.charge_redis(key_id, self.spend_lease(key_id, cost))

    def spend_lease(self, key_id: str, cost: int = 1) -> int:
        """Spends what this process holds leased for the key; answers the rest of ``cost``,
        which ``charge_redis`` must charge (0: nothing left to charge, no need to wait)."""
        if self.per_minute <= 0 or cost <= 0:
            return 0
        known = self._windows.get(key_id)
        if known is not None and known.window == _window(self._clock()):
            covered = min(cost, known.leased)  # already counted in Redis
            known.leased -= covered
            cost -= covered
        return cost

    async def charge_redis(self, key_id: str, cost: int) -> None:
        """Charges ``cost`` in Redis (leasing more when it fits); past the limit, raises."""
        if cost <= 0:
            return
        now = self._clock()
        window = _window(now)
        counter = f"engram:ratelimit:{key_id}:{window}"
        try:
            used, leased = await self._charge(
                keys=[counter],
                args=[cost, self.lease_units, WINDOW_SECONDS * 2, self.per_minute],
            )
        except Exception as exc:
            log.warning("rate limiter unavailable (%s): letting the request through", exc)
            return
        self._learn(key_id, window, int(used) + int(leased), int(leased))
        if int(used) > self.per_minute:
            raise RateLimited(
                f"rate limit of {self.per_minute} units a minute exceeded",
                retry_after=_seconds_until_end(window, now),
            )

    def quota(self, key_id: str) -> tuple[int, int] | None:
        """(units left, seconds until the window ends) of a key, as this process knows them;
        None if it charged none lately (or Redis was unreachable)."""
        known = self._windows.get(key_id)
        if known is None:
            return None
        now = self._clock()
        window = _window(now)
        left = max(0, self.per_minute - known.counted + known.leased)
        if known.window != window:  # charged in an earlier window: nothing is known spent
            left = self.per_minute
        return left, _seconds_until_end(window, now)

    def _learn(self, key_id: str, window: int, counted: int, leased: int) -> None:
        """Keeps what a charge in Redis answered: the count and a lease."""
        known = self._windows.get(key_id)
        if known is not None and known.window > window:  # a later window answered first
            return
        if known is None or known.window < window:
            if len(self._windows) >= MAX_KNOWN:  # keys seen in earlier windows hold nothing
                self._windows = {k: v for k, v in self._windows.items() if v.window >= window}
            known = self._windows[key_id] = _Window(window)
        known.counted = max(known.counted, counted)  # two charges may answer out of order
        known.leased += leased

    async def close(self) -> None:
        await self._redis.aclose()


def _window(now: float) -> int:
    return int(now // WINDOW_SECONDS)


def _seconds_until_end(window: int, now: float) -> int:
    """Seconds until ``window`` ends, rounded up (at least 1)."""
    return max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
