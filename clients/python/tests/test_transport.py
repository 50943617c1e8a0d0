"""Both clients over httpx's MockTransport, no server: the requests they send, how they page,
and how answers and errors are read."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from engram_client import (
    AsyncEngram,
    AuthenticationError,
    Engram,
    InvalidRequestError,
    Memory,
    RateLimitError,
    ServerError,
    TransportError,
    UnexpectedAnswerError,
    Weights,
)

NOW = "2026-01-01T00:00:00Z"


def memory(content: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "user_id": "alice", "content": content, "metadata": {},
            "session_id": None, "importance": None, "status": "ready", "error": None,
            "space": "minilm-384", "created_at": NOW, "updated_at": NOW, "expires_at": None,
            **fields}  # fmt: skip


Handler = Callable[[httpx.Request], httpx.Response]


def recording(answer: Handler) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return seen, httpx.MockTransport(handle)


def both(answer: Handler, work: Callable[[Any], Any]) -> list[tuple[list[httpx.Request], Any]]:
    """``work`` run on an ``Engram`` and on an ``AsyncEngram`` (awaiting what it returns):
    each client's requests and result."""
    seen, transport = recording(answer)
    with Engram("http://engram.test", "egm_key", transport=transport) as engram:
        blocking = work(engram)
        if hasattr(blocking, "__next__"):  # a listing: pages are fetched as it is read
            blocking = list(blocking)

    async def awaited() -> Any:
        async with AsyncEngram("http://engram.test", "egm_key", transport=transport) as engram:
            result = work(engram)
            if hasattr(result, "__aiter__"):
                return [item async for item in result]
            return await result

    seen_before = len(seen)
    awaited_result = asyncio.run(awaited())
    return [(seen[:seen_before], blocking), (seen[seen_before:], awaited_result)]


def test_a_search_sends_the_options_given_and_reads_typed_hits():
    hit = {**memory("Alice drinks her coffee black."), "type": "memory", "score": 0.7,
           "similarity": 0.7, "document_id": None, "chunk_index": None}  # fmt: skip
    for key in ("user_id", "status", "error", "space", "updated_at", "expires_at"):
        hit.pop(key)
    answer = {"results": [hit], "space": "minilm-384", "took_ms": 1.5}
    runs = both(
        lambda request: httpx.Response(200, json=answer),
        lambda engram: engram.search(
            "alice", "coffee?", k=3, mode="hybrid", weights=Weights(recency=0.2)
        ),
    )
    for requests, result in runs:
        (request,) = requests
        assert (request.method, request.url.path) == ("POST", "/v1/users/alice/search")
        assert request.headers["authorization"] == "Bearer egm_key"
        assert json.loads(request.content) == {
            "query": "coffee?", "k": 3, "mode": "hybrid", "weights": {"recency": 0.2}
        }  # fmt: skip
        assert result.results[0].content == "Alice drinks her coffee black."
        assert result.results[0].score == 0.7


def test_a_listing_follows_next_cursor_to_the_end():
    pages = {None: (["third", "second"], "c1"), "c1": (["first"], None)}

    def answer(request: httpx.Request) -> httpx.Response:
        contents, following = pages[request.url.params.get("cursor")]
        body = {"memories": [memory(c) for c in contents], "next_cursor": following}
        return httpx.Response(200, json=body)

    runs = both(answer, lambda engram: engram.list_memories("alice", status="ready", page_size=2))
    for requests, result in runs:
        assert [m.content for m in result] == ["third", "second", "first"]
        assert all(isinstance(m, Memory) for m in result)
        assert [dict(r.url.params) for r in requests] == [
            {"limit": "2", "status": "ready"},
            {"limit": "2", "status": "ready", "cursor": "c1"},
        ]


def test_the_keys_are_listed_as_one_list_of_every_page():
    def key(n: int) -> dict[str, Any]:
        return {"id": str(uuid.UUID(int=n)), "user_id": None, "prefix": f"egm_{n:016x}",
                "created_at": NOW, "revoked_at": None, "last_used_at": None}  # fmt: skip

    pages = {None: ([3, 2], "c1"), "c1": ([1], None)}

    def answer(request: httpx.Request) -> httpx.Response:
        numbers, following = pages[request.url.params.get("cursor")]
        body = {"keys": [key(n) for n in numbers], "next_cursor": following}
        return httpx.Response(200, json=body)

    for requests, result in both(answer, lambda engram: engram.list_keys(page_size=2)):
        assert [k.id.int for k in result] == [3, 2, 1]
        assert [dict(r.url.params) for r in requests] == [
            {"limit": "2"},
            {"limit": "2", "cursor": "c1"},
        ]


def test_the_audit_log_sends_each_filter_given():
    entry = {"id": 7, "at": NOW, "actor": "bootstrap", "action": "user.erase",
             "target": "alice", "user_id": "alice", "details": {}}  # fmt: skip
    since = datetime(2026, 1, 1, tzinfo=UTC)
    key = uuid.UUID(int=1)
    runs = both(
        lambda request: httpx.Response(200, json={"entries": [entry], "next_cursor": None}),
        lambda engram: engram.audit_log(action="user.erase", actor=key, since=since),
    )
    for requests, result in runs:
        assert [(e.action, e.user_id) for e in result] == [("user.erase", "alice")]
        sent = {"limit": "100", "action": "user.erase", "actor": str(key)}
        assert [dict(r.url.params) for r in requests] == [{**sent, "since": since.isoformat()}]


@pytest.mark.parametrize(
    ("user_id", "segment"), [("../keys", b"..%2Fkeys"), ("..", b"%2E%2E"), ("a b", b"a%20b")]
)
def test_a_user_id_stays_one_path_segment(user_id, segment):
    runs = both(
        lambda request: httpx.Response(200, json={"memories": [], "next_cursor": None}),
        lambda engram: engram.list_memories(user_id),
    )
    for requests, _ in runs:
        assert requests[0].url.raw_path.startswith(b"/v1/users/" + segment + b"/memories?")


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (401, {"error": {"code": "unauthenticated", "message": "bad key"}}, AuthenticationError,
         "unauthenticated"),
        (422, {"error": {"code": "invalid_input", "message": "k: too big",
                         "details": [{"key": "k"}]}}, InvalidRequestError, "invalid_input"),
        (502, "<html>Bad Gateway</html>", ServerError, "http_502"),
    ],
)  # fmt: skip
def test_errors_are_typed_with_the_apis_status_code_and_message(status, body, kind, code):
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    transport = httpx.MockTransport(answer)
    with (
        Engram("http://engram.test", "k", transport=transport) as engram,
        pytest.raises(kind) as raised,
    ):
        engram.healthz()
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message in json.dumps(body)


def test_a_rate_limit_says_when_to_retry():
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "rate_limited", "message": "slow down"}}
        return httpx.Response(429, json=body, headers={"Retry-After": "7"})

    with (
        Engram("http://engram.test", "k", transport=httpx.MockTransport(answer)) as engram,
        pytest.raises(RateLimitError) as limited,
    ):
        engram.list_keys()
    assert limited.value.retry_after == 7 and limited.value.message == "slow down"


def test_an_answer_of_another_shape_is_an_unexpected_answer():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"state": "fine"}))
    with (
        Engram("http://engram.test", "k", transport=transport) as engram,
        pytest.raises(UnexpectedAnswerError, match="GET /healthz"),
    ):
        engram.healthz()


def test_an_unreachable_api_is_a_transport_error():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        Engram("http://engram.test", "k", transport=httpx.MockTransport(refuse)) as engram,
        pytest.raises(TransportError, match="GET /healthz"),
    ):
        engram.healthz()
