"""Search: a user's nearest items to a query text or vector, by cosine similarity."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from litestar import Controller, post

from models.errors import InvalidInput
from models.search import search_vectors
from models.types import ItemType, Principal, SearchHit
from models.validation import check_content, check_filter, check_session_id, check_vector
from service.runtime import Runtime

TEXT_QUERY_COST = 4  # on top of the request's 1: embedding the query takes model time


class SearchIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: str | None = None
    vector: list[float] | None = None
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    threshold: Annotated[float, msgspec.Meta(ge=-1, le=1)] | None = None
    types: list[ItemType] | None = None
    filter: dict[str, Any] | None = None
    session_id: str | None = None
    space: str | None = None
    mode: Literal["vector", "hybrid"] = "vector"


class SearchOut(msgspec.Struct, kw_only=True):
    results: list[SearchHit]
    space: str
    took_ms: float


class SearchController(Controller):
    path = "/v1/users/{user_id:str}/search"
    tags = ["search"]

    @post("/", status_code=200)
    async def search(
        self, owner: str, principal: Principal, data: SearchIn, runtime: Runtime
    ) -> SearchOut:
        """The ``k`` most similar ready items of this user, best first."""
        started = time.perf_counter()
        limits = runtime.settings.limits
        if (data.query is None) == (data.vector is None):
            raise InvalidInput("give exactly one of query and vector")
        if data.mode == "hybrid":
            raise InvalidInput("mode 'hybrid' is not available yet; use 'vector'")
        space = (
            runtime.spaces.get(data.space) if data.space else runtime.spaces.default_for("memory")
        )
        conditions = check_filter(data.filter, limits)
        session_id = check_session_id(data.session_id)
        if data.vector is not None:
            query = np.asarray(check_vector(data.vector, space.dims, space.name), dtype=np.float32)
        else:
            await runtime.limiter.charge(principal.key_id, TEXT_QUERY_COST)
            query = await runtime.embed_query(
                space, check_content(data.query or "", limits, field="query")
            )
        hits: list[SearchHit] = []
        if data.types is None or "memory" in data.types:
            hits = await runtime.as_user(
                owner,
                search_vectors,
                space,
                owner,
                query,
                k=data.k,
                threshold=data.threshold,
                metadata=conditions,
                session_id=session_id,
                exact_max_rows=runtime.settings.exact_search_max_rows,
            )
        took_ms = round((time.perf_counter() - started) * 1000, 3)
        return SearchOut(results=hits, space=space.name, took_ms=took_ms)
