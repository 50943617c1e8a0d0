"""Context for the next prompt: the user's relevant memories and the session's latest turns."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import numpy as np
from litestar import Controller, post

from models.embedding.spaces import Space
from models.errors import InvalidInput
from models.search.context import LATEST_MESSAGES, Context, build_context
from models.search.query import Fusion, SearchQuery
from models.search.turns import MAX_NEIGHBORS
from models.store import sessions
from models.types import Principal
from models.validation import check_content, check_session_id, check_vector
from service.http.auth import USER_GUARDS
from service.http.errors import ERRORS
from service.http.routes.search import TEXT_QUERY_COST, Language
from service.http.runtime import Runtime


class ContextIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1)]
    # the query's vector, made by the client: when the memory space is external, and only then
    vector: list[float] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=32, le=100_000)] = 1000
    session_id: str | None = None
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50  # hits considered, best first
    mode: Literal["vector", "hybrid"] = "hybrid"
    # the turns before and after each hit that is a message, packed with it
    neighbors: Annotated[int, msgspec.Meta(ge=0, le=MAX_NEIGHBORS)] = 1
    # a hit is packed only if its score is at least this share of the best hit's
    floor: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.25
    threshold: Annotated[float, msgspec.Meta(ge=-1, le=1)] | None = None
    fusion: Fusion = Fusion()
    language: Language | None = None


async def answer_context(
    runtime: Runtime, principal: Principal, owner: str, data: ContextIn
) -> Context:
    """What a context request answers, by the route and by the MCP tool alike."""
    limits = runtime.settings.limits
    text = check_content(data.query, limits, field="query")
    session_id = check_session_id(data.session_id)
    space = runtime.spaces.default_for("memory")
    query = SearchQuery(
        vector=await _query_vector(runtime, principal, owner, space, text, data.vector),
        k=data.k,
        text=text,
        hybrid=data.mode == "hybrid",
        fusion=data.fusion,
        text_config=await runtime.text_config(data.language),
        threshold=data.threshold,
        types=("memory",),
    )
    latest = (
        await runtime.reading(
            owner, sessions.latest_messages, owner, session_id, limit=LATEST_MESSAGES
        )
        if session_id
        else []
    )
    return await build_context(
        runtime.reader(owner),
        space,
        owner,
        query,
        latest=latest,
        max_tokens=data.max_tokens,
        count=await runtime.token_counter(space),
        exact_max_rows=runtime.settings.search.exact_max_rows,
        ef_search=runtime.settings.search.hnsw_ef_search,
        hints=runtime.size_hints,
        neighbors=data.neighbors,
        floor=data.floor,
    )


async def _query_vector(
    runtime: Runtime,
    principal: Principal,
    owner: str,
    space: Space,
    text: str,
    vector: list[float] | None,
) -> np.ndarray:
    """The query's vector in the memory space: the client's in an external space (required
    there, refused elsewhere), else the text embedded (charged first: model time is dear)."""
    if space.external or vector is not None:
        if space.external and vector is None:
            raise InvalidInput(
                f"the memory space {space.name} is external: its clients embed, so context "
                "needs the query's vector (`vector`) beside its text"
            )
        if not space.external:
            raise InvalidInput(
                f"vector: the memory space {space.name} embeds the query itself; "
                "a vector is for an external memory space"
            )
        return check_vector(vector or [], space.dims, space.name)
    await runtime.limiter.charge(principal.key_id, TEXT_QUERY_COST)
    return await runtime.embed_query(owner, space, text)


class ContextController(Controller):
    path = "/v1/users/{user_id:str}/context"
    tags = ["sessions"]
    guards = USER_GUARDS

    @post("/", status_code=200, responses=ERRORS)
    async def context(
        self, owner: str, principal: Principal, data: ContextIn, runtime: Runtime
    ) -> Context:
        """What the user's memory holds on ``query`` (memories, and passages of past
        conversations around the messages found) and the session's latest messages, packed
        within ``max_tokens`` (docs/api.md gives the order), as text ready for a prompt."""
        return await answer_context(runtime, principal, owner, data)
