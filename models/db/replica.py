"""Reads on a streaming replica, and when a user's reads go to the primary instead.

One object decides, for every read of the API (searches, context, GETs): ``ReadRouting``.
Without a replica it runs everything on the primary. With one, a read goes to the replica
unless

- the replica is unreachable, or replays more than ``max_lag`` seconds behind the primary
  (a probe every ``probe_seconds`` says which; until it answers again, reads go to the
  primary);
- the user wrote lately and the replica has not replayed that write yet: the read waits up
  to ``max_wait`` seconds for it, then goes to the primary (read-your-writes);
- the read fails on the replica for a connection's sake or a conflict with recovery: it is
  run again on the primary at once.

Read-your-writes across processes: after each transaction of a user on the primary, the
primary's WAL position (``pg_current_wal_lsn()``, which is past the commit) is kept in Redis
for that user, for longer than a replica within ``max_lag`` needs to replay it. Every
process reads it there before sending that user's read to the replica; when Redis does not
answer, reads go to the primary.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from models.db.batch import Statement
from models.db.pool import CONNECTION_ERRORS
from models.db.rows import fetch_one
from models.db.scope import read_batch, run_scoped, run_scoped_once
from models.observe.metrics import REPLICA_READS

log = logging.getLogger("engram.db")

P = ParamSpec("P")
T = TypeVar("T")

# A read the replica could not serve: it is run on the primary. SerializationFailure is
# how a hot standby cancels a query that conflicts with replay.
REPLICA_ERRORS: tuple[type[Exception], ...] = (
    *CONNECTION_ERRORS,
    PoolTimeout,
    psycopg.errors.SerializationFailure,
)
POLL_SECONDS = 0.01  # how often a waiting read asks the replica how far it has replayed
REDIS_RETRY_SECONDS = 1.0  # after Redis failed, reads go to the primary this long

# The highest of the stored position and the new one, kept ``ARGV[2]`` ms longer.
_RAISE_POSITION = """
local stored = tonumber(redis.call('GET', KEYS[1]))
if stored == nil or stored < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
"""
_PRIMARY_POSITION = "SELECT (pg_current_wal_lsn() - '0/0')::bigint"
# on a primary (a URL that names no standby) nothing is ever behind: the position is NULL
_REPLAYED_POSITION = "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0')::bigint"


class WritePositions:
    """Each user's last write position on the primary, in Redis, shared by every process."""

    def __init__(self, redis_url: str, *, keep_seconds: float) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._raise = self._redis.register_script(_RAISE_POSITION)
        self._keep_ms = int(keep_seconds * 1000)

    async def record(self, user_id: str, position: int) -> None:
        """``user_id`` wrote up to ``position``."""
        await self._raise(keys=[_key(user_id)], args=[position, self._keep_ms])

    async def last(self, user_id: str) -> int | None:
        """Where ``user_id``'s last write ended, if it was lately."""
        stored = await self._redis.get(_key(user_id))
        return None if stored is None else int(stored)

    async def close(self) -> None:
        await self._redis.aclose()


def _key(user_id: str) -> str:
    return f"engram:written:{user_id}"


class ReadRouting:
    """Where each read of a user runs: the replica when it can answer as the primary
    would for that user, else the primary."""

    def __init__(
        self,
        primary: AsyncConnectionPool,
        replica: AsyncConnectionPool | None = None,  # closed: ``start`` opens it
        positions: WritePositions | None = None,
        *,
        max_wait: float = 0.2,
        max_lag: float = 5.0,
        probe_seconds: float = 0.5,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.positions = positions
        self.max_wait = max_wait
        self.max_lag = max_lag
        self.probe_seconds = probe_seconds
        self.available = False  # the last probe reached the replica, within max_lag
        self.replayed = 0  # how far the replica had replayed at the last look
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._redis_back = 0.0  # monotonic time before which Redis is not asked
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the replica's pool, look at the replica once, then keep looking in the
        background."""
        if self.replica is None:
            return
        await self.replica.open()
        await self.probe()
        self._probe = asyncio.create_task(self._keep_probing())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self.replica is not None:
            await self.replica.close()
        if self.positions is not None:
            await self.positions.close()

    async def wrote(self, user_id: str) -> None:
        """After a transaction of ``user_id`` on the primary: its reads must see it."""
        if self.replica is None or self.positions is None:
            return
        try:
            async with self.primary.connection() as conn:
                position = await fetch_one(conn, tuple_row, _PRIMARY_POSITION)
            assert position is not None
            await self.positions.record(user_id, position[0])
        except Exception as exc:
            # Other processes cannot know of this write: this one's reads go to the
            # primary until Redis answers again (theirs do too if Redis is down for them)
            self._redis_failed(exc)

    async def run(
        self,
        user_id: str,
        work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``run_scoped`` for work that only reads: on the replica if it may, else the
        primary."""
        if await self.use_replica(user_id):
            assert self.replica is not None
            try:
                answer = await run_scoped_once(self.replica, user_id, work, *args, **kwargs)
            except REPLICA_ERRORS as exc:
                REPLICA_READS.labels("primary_after_replica_error").inc()
                self._replica_failed(exc)
            else:
                return answer
        return await run_scoped(self.primary, user_id, work, *args, **kwargs)

    def reader(
        self, user_id: str
    ) -> Callable[[Sequence[Statement], Mapping[str, str]], Awaitable[list[list[Any]]]]:
        """A search's reads as ``user_id``: where the first goes, the later ones follow
        (a search's rounds see one server), unless the replica fails them."""
        if self.replica is None:  # nothing to decide: every read runs on the primary
            return functools.partial(read_batch, self.primary, user_id)
        # decided once, by the first read (a search of two spaces sends two at once)
        decided: list[asyncio.Future[bool]] = []
        failed = False

        async def read(
            statements: Sequence[Statement], settings: Mapping[str, str]
        ) -> list[list[Any]]:
            nonlocal failed
            if not decided:
                decided.append(asyncio.ensure_future(self.use_replica(user_id)))
            if await decided[0] and not failed and self.replica is not None:
                try:
                    return await read_batch(self.replica, user_id, statements, settings, attempts=1)
                except REPLICA_ERRORS as exc:
                    REPLICA_READS.labels("primary_after_replica_error").inc()
                    self._replica_failed(exc)
                    failed = True
            return await read_batch(self.primary, user_id, statements, settings)

        return read

    async def use_replica(self, user_id: str) -> bool:
        """Whether a read of ``user_id`` may go to the replica now (and it is counted)."""
        if self.replica is None:
            return False
        if not self.available:
            REPLICA_READS.labels("primary_replica_unavailable").inc()
            return False
        written = await self._last_write(user_id)
        if written is None:
            REPLICA_READS.labels("primary_positions_unknown").inc()
            return False
        if written <= self.replayed:
            REPLICA_READS.labels("replica").inc()
            return True
        if await self._caught_up(written):
            REPLICA_READS.labels("replica_after_wait").inc()
            return True
        REPLICA_READS.labels("primary_write_not_replayed").inc()
        return False

    async def probe(self) -> None:
        """Find whether the replica answers and how far behind the primary it replays."""
        assert self.replica is not None
        now = time.monotonic()
        try:
            async with self.primary.connection(timeout=1) as conn:
                primary = await fetch_one(conn, tuple_row, _PRIMARY_POSITION)
        except Exception as exc:  # the primary busy or away: the replica is not to blame
            log.debug("replica probe skipped: the primary did not answer (%s)", exc)
            return
        assert primary is not None
        self._samples.append((now, primary[0]))
        try:
            if not self.available:  # replace the connections a restart broke
                await self.replica.check()
            # bounded: a replica cut off without closing its connections would hold it
            replayed = await asyncio.wait_for(self._replayed(timeout=1), timeout=2)
        except Exception as exc:
            self._replica_failed(exc)
            return
        lag = self._lag(now, replayed)
        if lag > self.max_lag:
            if self.available:
                log.warning("the read replica is %.1f s behind: reads go to the primary", lag)
            self.available = False
        elif not self.available:
            log.info("the read replica answers, %.1f s behind: reads go to it", lag)
            self.available = True

    async def _keep_probing(self) -> None:
        while True:
            await asyncio.sleep(self.probe_seconds)
            await self.probe()

    def _lag(self, now: float, replayed: int) -> float:
        """How long ago the primary was where the replica is now (0: it is at the latest
        position seen)."""
        while self._samples and self._samples[0][0] < now - 2 * self.max_lag - 1:
            self._samples.popleft()
        behind = [at for at, position in self._samples if position > replayed]
        return now - behind[0] if behind else 0.0

    async def _replayed(self, *, timeout: float) -> int:
        assert self.replica is not None
        async with self.replica.connection(timeout=timeout) as conn:
            found = await fetch_one(conn, tuple_row, _REPLAYED_POSITION)
        assert found is not None
        in_recovery, position = found
        # a URL that names the primary itself is never behind
        self.replayed = 2**63 - 1 if not in_recovery else max(self.replayed, position or 0)
        return self.replayed

    async def _caught_up(self, written: int) -> bool:
        """Wait up to ``max_wait`` for the replica to replay up to ``written``."""
        deadline = time.monotonic() + self.max_wait
        while True:
            try:
                left = max(deadline - time.monotonic(), POLL_SECONDS)
                replayed = await asyncio.wait_for(self._replayed(timeout=left), timeout=left)
                if replayed >= written:
                    return True
            except TimeoutError:  # out of time: the probe judges the replica, not this read
                return False
            except REPLICA_ERRORS as exc:
                self._replica_failed(exc)
                return False
            if time.monotonic() + POLL_SECONDS > deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)

    async def _last_write(self, user_id: str) -> int | None:
        """The user's last write position (0: none lately); None when it cannot be known."""
        if self.positions is None or time.monotonic() < self._redis_back:
            return None
        try:
            return await self.positions.last(user_id) or 0
        except Exception as exc:
            self._redis_failed(exc)
            return None

    def _redis_failed(self, exc: Exception) -> None:
        if time.monotonic() >= self._redis_back:
            log.warning("write positions unknown (%s): reads go to the primary", exc)
        self._redis_back = time.monotonic() + REDIS_RETRY_SECONDS

    def _replica_failed(self, exc: Exception) -> None:
        if self.available:
            log.warning("the read replica failed (%s): reads go to the primary", exc)
        self.available = False


def written_keep_seconds(max_lag: float) -> float:
    """How long a write's position is kept: a replica within ``max_lag`` has replayed it
    by then (with the probe's margin)."""
    return 2 * max_lag + 1
