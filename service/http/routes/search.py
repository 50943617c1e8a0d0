"""Search: a user's nearest items to a query text or vector, by cosine similarity."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, post
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from models.errors import InvalidInput
from models.search.planner import search
from models.search.query import SearchQuery, Weights
from models.types import ItemType, Principal, SearchHit
from models.validation import check_content, check_filter, check_session_id, check_vector
from service.http.auth import CHARGES_ITSELF, authenticate, charged, provide_owner
from service.http.errors import ERRORS, send_error
from service.http.runtime import Runtime

TEXT_QUERY_COST = 4  # on top of the request's 1: embedding the query takes model time
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]


class WeightsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    recency: Fraction = 0.0
    importance: Fraction = 0.0
    half_life_days: Annotated[float, msgspec.Meta(gt=0, le=36500)] = 30.0


class SearchIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: str | None = None
    vector: list[float] | None = None
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    threshold: Annotated[float, msgspec.Meta(ge=-1, le=1)] | None = None
    types: list[ItemType] | None = None
    filter: dict[str, Any] | None = None
    session_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    space: str | None = None
    mode: Literal["vector", "hybrid"] = "vector"
    diversity: Fraction = 0.0
    weights: WeightsIn | None = None


class SearchResults(msgspec.Struct, kw_only=True):
    results: list[SearchHit]
    space: str
    took_ms: float


class HotPath(ASGIMiddleware):
    """The search route without Litestar's work per request (dependency injection, the
    body decoded twice, response objects): 0.25-0.34 ms less a search at a million
    vectors, side by side (docs/benchmarks.md). It answers as the handler below does,
    through the same functions, its errors through the same exception handlers. A request
    it cannot be sure to answer alike (another content type, a length unknown or over the
    limit, a body that does not decode as ``SearchIn``) goes on to the handler, with what
    it read of the body given back."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        runtime: Runtime = scope["litestar_app"].state.runtime
        fields = _first_fields(scope)
        read: list[ReceiveMessage] = []
        data = await _decoded(receive, fields, runtime.settings.limits.max_body_bytes, read)
        if data is None:  # the handler's to answer

            async def replay() -> ReceiveMessage:
                return read.pop(0) if read else await receive()

            await next_app(scope, replay, send)
            return
        try:
            body = await self._answer(scope, runtime, fields, data)
        except Exception as exc:  # Litestar's handling lies around the handler only
            await send_error(scope, receive, send, exc)
            return
        length = b"%d" % len(body)
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        start = HTTPResponseStartEvent(type="http.response.start", status=200, headers=headers)
        await send(start)
        await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))

    @staticmethod
    async def _answer(
        scope: Scope, runtime: Runtime, fields: dict[bytes, bytes], data: SearchIn
    ) -> bytes:
        authorization = fields.get(b"authorization", b"").decode("latin-1")
        principal = await authenticate(runtime, authorization, charge=False)
        owner = provide_owner(scope["path_params"]["user_id"], principal)
        answer = await charged(runtime, principal, 1, _search(owner, principal, data, runtime))
        return msgspec.json.encode(answer)


_DECODER = msgspec.json.Decoder(SearchIn)


def _first_fields(scope: Scope) -> dict[bytes, bytes]:
    """Each header's first value, as Litestar's ``request.headers.get`` reads it."""
    fields: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        fields.setdefault(name.lower(), value)
    return fields


async def _decoded(
    receive: Receive, fields: dict[bytes, bytes], max_bytes: int, read: list[ReceiveMessage]
) -> SearchIn | None:
    """The body as ``SearchIn``, or None when the handler should answer: another content
    type, a length unknown or over the limit, a client gone, a body that does not decode.
    Each message received is kept in ``read``."""
    length = fields.get(b"content-length", b"")
    if (
        fields.get(b"content-type") != b"application/json"
        or b"transfer-encoding" in fields
        or not length.isdigit()
        or int(length) > max_bytes
    ):
        return None
    body = b""
    while not read or read[-1].get("more_body", False):
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
    try:
        return _DECODER.decode(body)
    except msgspec.DecodeError:
        return None


class SearchController(Controller):
    path = "/v1/users/{user_id:str}/search"
    tags = ["search"]

    @post(
        "/",
        status_code=200,
        responses=ERRORS,
        opt={CHARGES_ITSELF: True},
        middleware=[HotPath()],
    )
    async def search(
        self, owner: str, principal: Principal, data: SearchIn, runtime: Runtime
    ) -> SearchResults:
        """The ``k`` best ready items of this user, best first."""
        # a search writes nothing: the rate limit is charged while it runs
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
    space = runtime.spaces.get(data.space) if data.space else runtime.spaces.default_for("memory")
    text = None if data.query is None else check_content(data.query, limits, field="query")
    if data.vector is not None:
        vector = check_vector(data.vector, space.dims, space.name)
    else:  # model time is dear: charged before it is spent
        await runtime.limiter.charge(principal.key_id, TEXT_QUERY_COST)
        vector = await runtime.embed_query(space, text or "")
    query = SearchQuery(
        vector=vector,
        k=data.k,
        text=text,
        hybrid=data.mode == "hybrid",
        threshold=data.threshold,
        metadata=check_filter(data.filter, limits),
        session_id=check_session_id(data.session_id),
        created_after=data.created_after,
        created_before=data.created_before,
        diversity=data.diversity,
        types=tuple(dict.fromkeys(data.types)) if data.types else ("memory", "chunk"),
        weights=msgspec.convert(msgspec.to_builtins(data.weights), Weights)
        if data.weights
        else None,
    )
    hits = await search(
        runtime.reader(owner),
        space,
        owner,
        query,
        exact_max_rows=runtime.settings.search.exact_max_rows,
        ef_search=runtime.settings.search.hnsw_ef_search,
        hints=runtime.size_hints,
    )
    took_ms = round((time.perf_counter() - started) * 1000, 3)
    return SearchResults(results=hits, space=space.name, took_ms=took_ms)
