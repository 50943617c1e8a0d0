"""Search: a user's nearest items to a query text or vector, by cosine similarity."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from litestar import Controller, post

from models.embedding.spaces import Space
from models.errors import EmbeddingError, InvalidInput
from models.search.planner import search
from models.search.query import Fusion, SearchQuery, Weights
from models.search.spaces import across_spaces, covered, first_spaces, spaces_held
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
    space: str  # the first of ``spaces``
    spaces: list[str]  # searched: the named one, else where the user's items are
    # where the user has items of the types asked that the query could not go (an external
    # space without a vector of its length; a provider that failed to embed the query)
    unsearched: list[str] = msgspec.field(default_factory=list)
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
    types = tuple(dict.fromkeys(data.types)) if data.types else ("memory", "chunk")
    first = first_spaces(runtime.spaces, data.space, types)
    check_query_parts(list(first), query=data.query, vector=data.vector, mode=data.mode)
    if data.weights and data.weights.recency + data.weights.importance > 1:
        raise InvalidInput("weights: recency + importance must be at most 1")
    text_config = await runtime.text_config(data.language)
    text = None if data.query is None else check_content(data.query, limits, field="query")
    query = SearchQuery(
        vector=np.zeros(0, np.float32),  # each space's, below
        k=data.k,
        text=text,
        hybrid=data.mode == "hybrid",
        fusion=data.fusion,
        text_config=text_config,
        threshold=data.threshold,
        metadata=check_filter(data.filter, limits),
        session_id=check_session_id(data.session_id),
        created_after=check_time_filter(data.created_after, field="created_after"),
        created_before=check_time_filter(data.created_before, field="created_before"),
        occurred_after=check_event_time(data.occurred_after, field="occurred_after"),
        occurred_before=check_event_time(data.occurred_before, field="occurred_before"),
        diversity=data.diversity,
        weights=msgspec.convert(msgspec.to_builtins(data.weights), Weights)
        if data.weights
        else None,
    )
    read = runtime.reader(owner)
    # where else the user's items are: a read only when there is somewhere else to look
    elsewhere = data.space is None and len(runtime.spaces.all()) > 1
    held = await spaces_held(read, owner) if elsewhere else set()
    dims = None if data.vector is None else len(data.vector)
    coverage = covered(runtime.spaces, first, held, text=text is not None, vector_dims=dims)
    queries: dict[Space, SearchQuery] = {}
    unsearched = list(coverage.unreached)
    for space, kinds in coverage.searched.items():
        try:
            vector = await _query_vector(runtime, principal, owner, space, data)
        except EmbeddingError:
            if space in first:
                raise
            unsearched.append(space.name)  # another space of the user's: named, not fatal
            continue
        queries[space] = msgspec.structs.replace(query, vector=vector, types=kinds)
    settings = runtime.settings.search
    searches = [
        search(
            read,
            space,
            owner,
            space_query,
            exact_max_rows=settings.exact_max_rows,
            ef_search=settings.hnsw_ef_search,
            hints=runtime.size_hints,
        )
        for space, space_query in queries.items()
    ]
    # one space is searched in this task: a task of its own would cost a search a task and
    # a turn of the event loop more, for nothing to run beside it
    rankings = [await searches[0]] if len(searches) == 1 else await asyncio.gather(*searches)
    # Similarities of different models do not compare: the spaces' rankings are fused.
    hits = (
        rankings[0]
        if len(rankings) == 1
        else across_spaces(rankings, k=data.k, fusion_k=data.fusion.k)
    )
    hits = await with_turns(read, owner, hits, neighbors=data.neighbors)
    took_ms = round((time.perf_counter() - started) * 1000, 3)
    names = [space.name for space in queries]
    return SearchResults(
        results=hits, space=names[0], spaces=names, unsearched=sorted(unsearched), took_ms=took_ms
    )


def check_query_parts(
    searched: Sequence[Space], *, query: str | None, vector: list[float] | None, mode: str
) -> None:
    """What a search must give of ``query`` and ``vector``: exactly one where the server
    embeds the query; in an external space the query's vector (its clients embed), with the
    text too for mode 'hybrid', or for the spaces the server embeds in beside it."""
    external = [space.name for space in searched if space.external]
    if not external and (query is None) == (vector is None):
        raise InvalidInput("give exactly one of query and vector")
    if external and vector is None:
        raise InvalidInput(
            f"space {', '.join(external)} is external: its clients embed, so a search there "
            "needs the query's vector (`vector`; with `query` too for mode 'hybrid')"
        )
    if external and query is not None and mode != "hybrid" and len(external) == len(searched):
        raise InvalidInput(
            "query and vector together are for mode 'hybrid' (its text side and its vector "
            "side); a vector search takes the vector alone"
        )
    if mode == "hybrid" and query is None:
        raise InvalidInput("mode 'hybrid' needs query text")


async def _query_vector(
    runtime: Runtime, principal: Principal, owner: str, space: Space, data: SearchIn
) -> np.ndarray:
    """The query in ``space``: the vector given, checked, or the text embedded there (a
    space the server embeds in takes the text when both are given)."""
    if data.vector is not None and (space.external or data.query is None):
        return check_vector(data.vector, space.dims, space.name)
    # model time is dear: charged before it is spent
    await runtime.limiter.charge(principal.key_id, TEXT_QUERY_COST)
    return await runtime.embed_query(owner, space, data.query or "")


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
