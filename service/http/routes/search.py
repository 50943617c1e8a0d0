"""Search: a user's nearest items to a query text or vector, by cosine similarity."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, post

from models.errors import InvalidInput
from models.search.planner import search
from models.search.query import Fusion, SearchQuery, Weights
from models.search.turns import MAX_NEIGHBORS, with_turns
from models.types import ItemType, Principal, SearchHit
from models.validation import (
    check_content,
    check_event_time,
    check_filter,
    check_session_id,
    check_time_filter,
    check_vector,
)
from service.http.auth import CHARGES_ITSELF, USER_GUARDS, charged
from service.http.errors import ERRORS
from service.http.hot_path import HotPath
from service.http.runtime import Runtime

TEXT_QUERY_COST = 4  # on top of the request's 1: embedding the query takes model time
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
# a text-search configuration's name (whether the database has it is checked after)
Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]


class WeightsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    recency: Fraction = 0.0
    importance: Fraction = 0.0
    half_life_days: Annotated[float, msgspec.Meta(gt=0, le=36500)] = 30.0


class SearchIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: str | None = None
    vector: list[float] | None = None
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    # least cosine similarity (never the score): docs/api.md, Search
    threshold: Annotated[float, msgspec.Meta(ge=-1, le=1)] | None = None
    types: list[ItemType] | None = None
    filter: dict[str, Any] | None = None
    session_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None
    space: str | None = None
    mode: Literal["vector", "hybrid"] = "vector"
    # hybrid mode: how the rankings are fused, and the language of the text side
    fusion: Fusion = Fusion()
    language: Language | None = None
    diversity: Fraction = 0.0
    weights: WeightsIn | None = None
    # the turns before and after each hit that is a message, in its session
    neighbors: Annotated[int, msgspec.Meta(ge=0, le=MAX_NEIGHBORS)] = 0


class SearchResults(msgspec.Struct, kw_only=True):
    results: list[SearchHit]
    space: str
    took_ms: float


async def answer_search(
    runtime: Runtime, principal: Principal, owner: str, data: SearchIn
) -> SearchResults:
    """What a search request answers, by the handler and by its hot path alike. A search
    writes nothing: the rate limit is charged while it runs."""
    return await charged(runtime, principal, 1, _search(owner, principal, data, runtime))


async def _search(
    owner: str, principal: Principal, data: SearchIn, runtime: Runtime
) -> SearchResults:
    started = time.perf_counter()
    limits = runtime.settings.limits
    if (data.query is None) == (data.vector is None):
        raise InvalidInput("give exactly one of query and vector")
    if data.mode == "hybrid" and data.query is None:
        raise InvalidInput("mode 'hybrid' needs query text")
    if data.weights and data.weights.recency + data.weights.importance > 1:
        raise InvalidInput("weights: recency + importance must be at most 1")
    text_config = await runtime.text_config(data.language)
    space = runtime.spaces.get(data.space) if data.space else runtime.spaces.default_for("memory")
    text = None if data.query is None else check_content(data.query, limits, field="query")
    occurred_after = check_event_time(data.occurred_after, field="occurred_after")
    occurred_before = check_event_time(data.occurred_before, field="occurred_before")
    created_after = check_time_filter(data.created_after, field="created_after")
    created_before = check_time_filter(data.created_before, field="created_before")
    if data.vector is not None:
        vector = check_vector(data.vector, space.dims, space.name)
    else:  # model time is dear: charged before it is spent
        await runtime.limiter.charge(principal.key_id, TEXT_QUERY_COST)
        vector = await runtime.embed_query(owner, space, text or "")
    query = SearchQuery(
        vector=vector,
        k=data.k,
        text=text,
        hybrid=data.mode == "hybrid",
        fusion=data.fusion,
        text_config=text_config,
        threshold=data.threshold,
        metadata=check_filter(data.filter, limits),
        session_id=check_session_id(data.session_id),
        created_after=created_after,
        created_before=created_before,
        occurred_after=occurred_after,
        occurred_before=occurred_before,
        diversity=data.diversity,
        types=tuple(dict.fromkeys(data.types)) if data.types else ("memory", "chunk"),
        weights=msgspec.convert(msgspec.to_builtins(data.weights), Weights)
        if data.weights
        else None,
    )
    read = runtime.reader(owner)
    hits = await search(
        read,
        space,
        owner,
        query,
        exact_max_rows=runtime.settings.search.exact_max_rows,
        ef_search=runtime.settings.search.hnsw_ef_search,
        hints=runtime.size_hints,
    )
    hits = await with_turns(read, owner, hits, neighbors=data.neighbors)
    took_ms = round((time.perf_counter() - started) * 1000, 3)
    return SearchResults(results=hits, space=space.name, took_ms=took_ms)


class SearchController(Controller):
    path = "/v1/users/{user_id:str}/search"
    tags = ["search"]
    guards = USER_GUARDS

    @post(
        "/",
        status_code=200,
        responses=ERRORS,
        opt={CHARGES_ITSELF: True},
        middleware=[HotPath(answer_search, SearchIn)],
    )
    async def search(
        self, owner: str, principal: Principal, data: SearchIn, runtime: Runtime
    ) -> SearchResults:
        """The ``k`` best ready items of this user, best first."""
        return await answer_search(runtime, principal, owner, data)
