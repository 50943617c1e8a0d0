"""Rate limits in Redis, shared by every API process: cost units per key, and requests
without a valid key per client address.

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

An import charges its embedding work all at once (``charge_borrowing``): admitted while the
window has anything left, it spends the window and borrows the rest from the key's next
windows, which open spent (in whole or in part). So a key spends at most its limit a minute
on average, imports included, and a large import is still possible.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

from models.errors import RateLimited

log = logging.getLogger("engram.ratelimit")

WINDOW_SECONDS = 60
LEASE_SHARE = 50  # a lease is at most this share of the limit (1/50)
MAX_KNOWN = 10_000  # keys or addresses remembered; past that, those of earlier windows go
# A key's counter in this window (KEYS[1]) and what an import borrowed (KEYS[2], a hash: the
# last window it reaches and the units it took of that one). A window's counter opens with
# what was borrowed from it; ``resets`` is the window at whose end the key has units again.
_OPEN = """
local limit, window, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local last, units = unpack(redis.call('HMGET', KEYS[2], 'window', 'units'))
last, units = tonumber(last) or -1, tonumber(units) or 0
local resets = math.max(window, units >= limit and last or last - 1)
local used = tonumber(redis.call('GET', KEYS[1]))
if not used then
  used = window < last and limit or (window == last and units or 0)
  redis.call('SET', KEYS[1], used, 'EX', ttl)
end
"""
# Atomically: charge the cost (a refused request counts too); if it fits, lease up to ARGV[5]
# more of what is left. Answers {total after the charge, units leased, resets}.
_CHARGE = (
    _OPEN
    + """
local cost, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
used = redis.call('INCRBY', KEYS[1], cost)
if used > limit then return {used, 0, resets} end
lease = math.min(lease, limit - used)
if lease > 0 then redis.call('INCRBY', KEYS[1], lease) end
return {used, lease, resets}
"""
)
# Atomically: an import's cost, refused (nothing charged) if the window is spent; else what
# does not fit in the window is borrowed from the next ones. Answers {total in this window,
# windows borrowed (-1: refused), resets}.
_BORROW = (
    _OPEN
    + """
local cost = tonumber(ARGV[4])
if used >= limit then return {used, -1, resets} end
local over = used + cost - limit
if over <= 0 then return {redis.call('INCRBY', KEYS[1], cost), 0, resets} end
redis.call('INCRBY', KEYS[1], limit - used)
local ahead = math.ceil(over / limit)
local units = over - (ahead - 1) * limit
redis.call('HSET', KEYS[2], 'window', window + ahead, 'units', units)
redis.call('EXPIRE', KEYS[2], (ahead + 2) * ttl)  -- outlives the last window borrowed
return {limit, ahead, units >= limit and window + ahead or window + ahead - 1}
"""
)
# A failed authentication from an address, counted in its window.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass
class _Window:
    """What this process knows of a key's window: its count in Redis at the last charge
    (leases included), the units it holds leased and unspent, and the window at whose end
    the key has units again (later than this one when an import borrowed them)."""

    window: int
    counted: int = 0
    leased: int = 0
    resets: int = 0


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
        self._borrow = self._redis.register_script(_BORROW)
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
        try:
            used, leased, resets = await self._charge(
                keys=self._keys(key_id, window), args=[*self._args(window), cost, self.lease_units]
            )
        except Exception as exc:
            log.warning("rate limiter unavailable (%s): letting the request through", exc)
            return
        self._learn(key_id, window, int(used) + int(leased), int(leased), int(resets))
        if int(used) > self.per_minute:
            raise RateLimited(
                f"rate limit of {self.per_minute} units a minute exceeded",
                retry_after=_seconds_until_end(int(resets), now),
            )

    async def charge_borrowing(self, key_id: str, cost: int) -> None:
        """Charges ``cost`` whole (an import's embedding): refused only if the key has
        nothing left in this window; what does not fit is borrowed from its next windows."""
        cost = self.spend_lease(key_id, cost)
        if cost <= 0:
            return
        now = self._clock()
        window = _window(now)
        try:
            used, ahead, resets = await self._borrow(
                keys=self._keys(key_id, window), args=[*self._args(window), cost]
            )
        except Exception as exc:
            log.warning("rate limiter unavailable (%s): letting the request through", exc)
            return
        self._learn(key_id, window, int(used), 0, int(resets))
        if int(ahead) < 0:
            raise RateLimited(
                f"rate limit of {self.per_minute} units a minute exceeded",
                retry_after=_seconds_until_end(int(resets), now),
            )

    def quota(self, key_id: str) -> tuple[int, int] | None:
        """(units left, seconds until the window ends) of a key, as this process knows them;
        None if it charged none lately (or Redis was unreachable)."""
        known = self._windows.get(key_id)
        if known is None:
            return None
        now = self._clock()
        window = _window(now)
        if known.window == window:
            left = max(0, self.per_minute - known.counted + known.leased)
        else:  # charged in an earlier window: nothing is known spent in this one
            left = 0 if known.resets >= window else self.per_minute
        return left, _seconds_until_end(max(window, known.resets), now)

    def _keys(self, key_id: str, window: int) -> list[str]:
        return [f"engram:ratelimit:{key_id}:{window}", f"engram:ratelimit:{key_id}:borrowed"]

    def _args(self, window: int) -> list[int]:
        return [self.per_minute, window, WINDOW_SECONDS * 2]

    def _learn(self, key_id: str, window: int, counted: int, leased: int, resets: int) -> None:
        """Keeps what a charge in Redis answered: the count, a lease, the reset."""
        known = self._windows.get(key_id)
        if known is not None and known.window > window:  # a later window answered first
            return
        if known is None or known.window < window:
            if len(self._windows) >= MAX_KNOWN:  # keys seen in earlier windows hold nothing
                self._windows = {k: v for k, v in self._windows.items() if v.window >= window}
            known = self._windows[key_id] = _Window(window)
        known.counted = max(known.counted, counted)  # two charges may answer out of order
        known.leased += leased
        known.resets = max(known.resets, resets)

    async def close(self) -> None:
        await self._redis.aclose()


class FailedKeys:
    """Requests without a valid key, counted per client address: past ``per_minute`` in a
    window (0: no limit), each answer to that address is a 429 until the window ends.

    Only a request about to fail authentication is counted (one trip to Redis), so requests
    with valid keys cost nothing here. Once Redis says an address has spent its limit, this
    process remembers it for the window: its requests without a key are refused at once, and
    a key this process does not remember is refused before it is looked up in Postgres (a
    key it remembers is still served).

    The address is the direct peer's; with ``trusted_proxies``, a peer among them is taken
    at its word: the client is the last address of ``X-Forwarded-For`` that is not one of
    them. An IPv6 client is counted by its /64 network (one host's usual share).
    """

    def __init__(
        self, redis_url: str, *, per_minute: int, trusted_proxies: Iterable[str] = ()
    ) -> None:
        self.per_minute = per_minute
        self.trusted = tuple(ipaddress.ip_network(network) for network in trusted_proxies)
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self._count = self._redis.register_script(_COUNT)
        self._over: dict[str, int] = {}  # addresses over the limit, by window

    def address(self, peer: str | None, forwarded: Iterable[str]) -> str:
        """The address a request is counted by, from its peer's and the values of its
        ``X-Forwarded-For`` fields (read only if the peer is a trusted proxy)."""
        client = _ip(peer or "")
        if client is None:
            return (peer or "unknown")[:64]  # not an IP socket (a test client, a Unix socket)
        if self.trusted and self._is_trusted(client):
            hops = [hop.strip() for value in forwarded for hop in value.split(",")]
            for hop in reversed(hops):
                forwarder = _ip(hop)
                if forwarder is None:  # garbage ends the walk at the proxy that passed it
                    break
                client = forwarder
                if not self._is_trusted(client):
                    break
        return _counted_as(client)

    def refuse_if_over(self, address: str) -> None:
        """Raises RateLimited if this process knows the address spent its limit."""
        over = self._over.get(address)
        now = time.time()
        if over is not None and over == _window(now):
            raise self._refusal(now)

    async def count(self, address: str) -> None:
        """Counts a failed authentication; raises RateLimited past the limit."""
        if self.per_minute <= 0:
            return
        self.refuse_if_over(address)
        now = time.time()
        window = _window(now)
        try:
            count = int(
                await self._count(
                    keys=[f"engram:failedkeys:{address}:{window}"], args=[WINDOW_SECONDS * 2]
                )
            )
        except Exception as exc:
            log.warning("rate limiter unavailable (%s): failed key not counted", exc)
            return
        if count >= self.per_minute:  # from now on, nothing more is looked up for it
            if self._over.get(address) != window:
                log.warning("%s: %d requests without a valid key this minute", address, count)
            if len(self._over) >= MAX_KNOWN:
                self._over = {a: w for a, w in self._over.items() if w >= window}
            self._over[address] = window
        if count > self.per_minute:
            raise self._refusal(now)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.trusted)

    def _refusal(self, now: float) -> RateLimited:
        return RateLimited(
            f"more than {self.per_minute} requests without a valid key from this address "
            "this minute",
            retry_after=_seconds_until_end(_window(now), now),
        )

    async def close(self) -> None:
        await self._redis.aclose()


def _window(now: float) -> int:
    return int(now // WINDOW_SECONDS)


def _seconds_until_end(window: int, now: float) -> int:
    """Seconds until ``window`` ends, rounded up (at least 1)."""
    return max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, with a port or IPv6 brackets if a proxy wrote them; None if not one."""
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _counted_as(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
