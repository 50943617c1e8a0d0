"""Both clients over httpx's MockTransport, no server: the requests they send, how they page,
and how answers and errors are read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from engram_client import (
    ApiError,
    AsyncEngram,
    AuthenticationError,
    Engram,
    InvalidRequestError,
    Memory,
    RateLimit,
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


def limited(status: int, limit: str, remaining: str, reset: str, **more: str) -> httpx.Response:
    headers = {"RateLimit-Limit": limit, "RateLimit-Remaining": remaining,
               "RateLimit-Reset": reset, **more}  # fmt: skip
    if status >= 400:
        body = {"error": {"code": f"e{status}", "message": "refused"}}
        return httpx.Response(status, json=body, headers=headers)
    return httpx.Response(status, json=memory("Alice drinks her coffee black."), headers=headers)


def rate_limits_seen(answers: list[httpx.Response]) -> list[list[RateLimit | None]]:
    """Each client reading ``answers`` in turn (errors too): its ``rate_limit`` before the
    first and after each; the blocking client's list, then the async one's."""

    def transport() -> httpx.MockTransport:
        # a response is read once: each client gets copies of its own
        copies = iter([httpx.Response(a.status_code, headers=a.headers, content=a.content)
                       for a in answers])  # fmt: skip
        return httpx.MockTransport(lambda request: next(copies))

    seen: list[RateLimit | None] = []
    with Engram("http://engram.test", "k", transport=transport()) as engram:
        seen.append(engram.rate_limit)
        for _ in answers:
            with contextlib.suppress(ApiError):
                engram.get_memory("alice", uuid.uuid4())
            seen.append(engram.rate_limit)

    async def awaited() -> list[RateLimit | None]:
        async with AsyncEngram("http://engram.test", "k", transport=transport()) as engram:
            seen = [engram.rate_limit]
            for _ in answers:
                with contextlib.suppress(ApiError):
                    await engram.get_memory("alice", uuid.uuid4())
                seen.append(engram.rate_limit)
            return seen

    return [seen, asyncio.run(awaited())]


def test_the_rate_limit_is_what_the_latest_answer_that_told_it_said():
    answers = [
        limited(200, "6000", "5999", "42"),
        httpx.Response(200, json=memory("no headers: the server has no limit, say")),
        limited(404, "6000", "5998", "41"),  # an error after the key was checked
        httpx.Response(401, json={"error": {"code": "unauthenticated", "message": "no"}}),
        limited(429, "6000", "0", "7", **{"Retry-After": "7"}),
    ]
    first, after_404 = RateLimit(6000, 5999, 42), RateLimit(6000, 5998, 41)
    spent = RateLimit(limit=6000, remaining=0, reset=7)
    for seen in rate_limits_seen(answers):
        assert seen == [None, first, first, after_404, after_404, spent]


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Limit": "abc"},
        {"RateLimit-Remaining": "-1"},
        {"RateLimit-Reset": "1.5"},
        {"RateLimit-Reset": ""},
        {"RateLimit-Reset": "5, 6"},  # the header twice
        {"RateLimit-Reset": "\u0661\u0660".encode()},  # digits, but not ASCII ones (UTF-8)
        {"RateLimit-Limit": "60", "RateLimit-Remaining": "3"},  # no reset
    ],
)
def test_a_malformed_rate_limit_leaves_the_last_one_as_it_was(headers):
    told = {"RateLimit-Limit": "60", "RateLimit-Remaining": "10", "RateLimit-Reset": "5"}
    malformed = {**told, **headers} if len(headers) == 1 else headers
    answers = [httpx.Response(200, json=memory("x"), headers=h) for h in (told, malformed)]
    for seen in rate_limits_seen(answers):
        assert seen == [None, RateLimit(60, 10, 5), RateLimit(60, 10, 5)]


DOCUMENTS = {"batch_id": str(uuid.uuid4()), "documents": []}
MESSAGES = [{"role": "user", "content": "x"}]
WRITES = {  # a write, told to wait or not; the body it sends when not; an answer to it
    "update_memory": (
        lambda engram, wait: engram.update_memory("alice", uuid.UUID(int=1), content="x",
                                                  wait=wait),
        {"content": "x"},
        memory("x"),
    ),
    "add_documents": (
        lambda engram, wait: engram.add_documents("alice", [{"content": "x"}], wait=wait),
        {"documents": [{"content": "x"}]},
        DOCUMENTS,
    ),
    "add_messages": (
        lambda engram, wait: engram.add_messages("alice", "s1", MESSAGES, wait=wait),
        {"messages": MESSAGES},
        {"messages": []},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", WRITES)
@pytest.mark.parametrize("wait", [False, True])
def test_a_write_asks_the_server_to_wait_only_when_told(name, wait):
    write, body, answer = WRITES[name]
    # a wait the server gave up on answers 202: an answer, not an error
    runs = both(lambda request: httpx.Response(202, json=answer), lambda e: write(e, wait))
    for requests, _ in runs:
        (request,) = requests
        assert json.loads(request.content) == ({**body, "wait": True} if wait else body)


@pytest.mark.parametrize("wait", [False, True])
def test_an_upload_asks_the_server_to_wait_in_a_form_field_only_when_told(wait):
    runs = both(
        lambda request: httpx.Response(202, json=DOCUMENTS),
        lambda engram: engram.upload_files("alice", [("a.txt", "x")], wait=wait),
    )
    for requests, result in runs:
        (request,) = requests
        assert (b'name="wait"\r\n\r\ntrue\r\n' in request.content) is wait
        assert (b'name="wait"' in request.content) is wait
        assert b'filename="a.txt"' in request.content and result.documents == []


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
