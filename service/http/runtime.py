"""What request handlers share, opened in the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from models.db.replica import ReadRouting
from models.db.scope import ALL_USERS, Reader, run_scoped
from models.embedding.provider import Embedder, token_counter
from models.embedding.spaces import Space, SpaceRegistry
from models.errors import InvalidInput, RateLimited
from models.ingest.tokens import TokenCounter, estimate_tokens
from models.jobs.wakeups import WakeUps
from models.search.hints import SizeHints
from models.search.languages import text_configs
from models.settings import Settings
from service.http.keycache import KeyCache
from service.http.ratelimit import FailedKeys, RateLimiter
from service.http.wait import Settlements

QUERY_CACHE_SIZE = 1024  # recent query texts whose vectors are kept (1.5 KiB each)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Runtime:
    """The open resources of one API process."""

    settings: Settings
    pool: AsyncConnectionPool
    spaces: SpaceRegistry
    embedders: dict[str, Embedder]
    wakeups: WakeUps
    limiter: RateLimiter
    failed_keys: FailedKeys
    keys: KeyCache
    # the requests waiting for their items to settle, woken by Postgres' notices
    settlements: Settlements
    schema_head: str
    # where reads go: a replica when one is configured and has the user's writes
    routing: ReadRouting
    # the database's text-search configurations (None: not read yet)
    languages: frozenset[str] | None = None
    query_cache: OrderedDict[tuple[str, str, str], np.ndarray] = field(default_factory=OrderedDict)
    # which path each user's searches take, and which types they have no vectors of
    size_hints: SizeHints = field(default_factory=SizeHints)
    counters: dict[str, TokenCounter] = field(default_factory=dict)
    exports: dict[str, int] = field(default_factory=dict)  # running, by user
    # /metrics' gauges of state and when they were read (service/http/routes/metrics.py)
    scraped: tuple[float, list[Any]] | None = None

    async def token_counter(self, space: Space) -> TokenCounter:
        """How chunks of ``space`` are measured: made once per space, off the event loop
        (copying a tokenizer takes a tenth of a second)."""
        if space.name not in self.counters:
            embedder = self.embedders.get(space.name)
            self.counters[space.name] = (
                estimate_tokens  # an external space: no tokenizer of its model here
                if embedder is None
                else await asyncio.to_thread(token_counter, embedder)
            )
        return self.counters[space.name]

    async def text_configs(self) -> frozenset[str]:
        """The database's text-search configurations, read once."""
        if self.languages is None:
            async with self.pool.connection() as conn:
                self.languages = await text_configs(conn)
        return self.languages

    async def text_config(self, language: str | None) -> str:
        """The text-search configuration a request names, checked (a 422 if the database
        has none of that name); the configured one when it names none."""
        if language is None:
            return self.settings.search.text_search_config
        known = await self.text_configs()
        if language not in known:
            raise InvalidInput(
                f"language {language!r} is not a text-search configuration of this database; "
                f"it has: {', '.join(sorted(known))}"
            )
        return language

    async def as_user(
        self,
        user_id: str,
        work: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run a repository function in a transaction that can see only ``user_id``'s rows,
        on the primary; that user's reads see what it did from then on."""
        try:
            return await run_scoped(self.pool, user_id, work, *args, **kwargs)
        finally:
            await self.routing.wrote(user_id)

    async def reading(
        self,
        user_id: str,
        work: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``as_user`` for a function that only reads: on the read replica when there is
        one and it has replayed the user's writes (``models/db/replica.py``)."""
        return await self.routing.run(user_id, work, *args, **kwargs)

    async def across_users(
        self,
        work: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run a repository function of an admin route, which may see every user's rows."""
        return await run_scoped(self.pool, ALL_USERS, work, *args, **kwargs)

    def reader(self, user_id: str) -> Reader:
        """Read batches of statements as ``user_id``, each in one round trip (a search)."""
        return self.routing.reader(user_id)

    @contextlib.contextmanager
    def exporting(self, user_id: str, *, at_most: int) -> Iterator[None]:
        """Count an export of ``user_id`` while it runs; past ``at_most`` at once, a 429."""
        if self.exports.get(user_id, 0) >= at_most:
            raise RateLimited(
                f"at most {at_most} exports of one user at a time; retry shortly", retry_after=1
            )
        self.exports[user_id] = self.exports.get(user_id, 0) + 1
        try:
            yield
        finally:
            self.exports[user_id] -= 1
            if not self.exports[user_id]:
                del self.exports[user_id]

    async def embed_query(self, user_id: str, space: Space, text: str) -> np.ndarray:
        """Embed query text off the event loop, once: each user's recent query vectors are
        cached, for that user alone (how fast a query answers must not tell a user what
        another user searched)."""
        key = (user_id, space.name, text)
        vector = self.query_cache.get(key)
        if vector is None:
            matrix = await self.embedders[space.name].embed([text])
            vector = np.asarray(matrix[0], dtype=np.float32)
            self.query_cache[key] = vector
            if len(self.query_cache) > QUERY_CACHE_SIZE:
                self.query_cache.popitem(last=False)
        else:
            self.query_cache.move_to_end(key)
        return vector
