"""The search route's hot path (``HotPath``, service/http/hot_path.py) answers exactly as the
route's handler does: the same status, headers and body, errors included; what it may not
answer alike goes on to the handler; and the route has nothing the hot path would skip."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.api import ADMIN, add_memories

from models.errors import Forbidden
from service.http import hot_path
from service.http.errors import EXCEPTION_HANDLERS
from service.http.hot_path import PROVIDES, HotPath

pytestmark = pytest.mark.usefixtures("worker")

JSON = "application/json"
# Litestar's handler takes this too; the hot path leaves it to the handler.
JSON_WITH_CHARSET = "application/json; charset=utf-8"


@pytest.fixture
def hot_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many requests the hot path answered itself, an answer or an error (each: one)."""
    answered: list[int] = []

    def counting(send: Any) -> Any:
        async def counted(*args: Any) -> None:
            answered.append(1)
            await send(*args)

        return counted

    monkeypatch.setattr(hot_path, "_respond", counting(hot_path._respond))
    monkeypatch.setattr(hot_path, "send_error", counting(hot_path.send_error))
    yield answered


@pytest.fixture(scope="module")
def people(client: Any) -> dict[str, Any]:
    """Two users; one with memories to find."""
    users = {}
    for name in ("ann", "ben"):
        user = f"hot-{name}-{id(client)}"
        made = client.post("/v1/keys", json={"user_id": user}, headers=ADMIN)
        assert made.status_code == 201, made.text
        users[name] = (user, {"Authorization": f"Bearer {made.json()['key']}"})
    user, headers = users["ann"]
    contents = ["espresso at dawn", "a walk by the river", "invoice code ZX-9913"]
    for n, content in enumerate(contents):
        add_memories(client, user, headers, [content], metadata={"n": n, "tag": "t"})
    return users


def send(client: Any, user: str, headers: dict[str, str], body: Any, content_type: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        f"/v1/users/{user}/search",
        content=raw,
        headers={**headers, "Content-Type": content_type},
    )


def comparable(answer: Any) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body, less what differs between any two answers (the length
    follows ``took_ms``'s digits; what is left of the key's rate limit counts down, so only
    its presence is compared)."""
    assert answer.headers.get("x-request-id")
    assert answer.headers["content-length"] == str(len(answer.content))
    varying = ("date", "x-request-id", "content-length")
    counting = ("ratelimit-remaining", "ratelimit-reset")
    headers = {
        k: "..." if k in counting else v for k, v in answer.headers.items() if k not in varying
    }
    body = answer.json()
    if isinstance(body, dict):
        body.pop("took_ms", None)
    return answer.status_code, headers, body


VECTOR = [0.1] * 384
ANSWERED_BY_THE_HOT_PATH = {
    "a vector query": (None, {"vector": VECTOR, "k": 2}),
    "a text query": (None, {"query": "coffee in the morning", "k": 2}),
    "hybrid, filtered, weighted": (
        None,
        {
            "query": "ZX-9913",
            "mode": "hybrid",
            "filter": {"n": {"$gte": 1}, "tag": "t"},
            "weights": {"importance": 0.2},  # recency moves with the clock
            "diversity": 0.3,
        },
    ),
    "no results": (None, {"vector": VECTOR, "threshold": 0.99}),
    "an unknown key: 401": ({"Authorization": "Bearer ek_nope_nope"}, {"vector": VECTOR}),
    "no key: 401": ({"Authorization": ""}, {"vector": VECTOR}),
    "another user's key: 403": ("ben", {"vector": VECTOR}),
    "both query and vector: 422": (None, {"query": "x", "vector": VECTOR}),
    "a vector of the wrong length: 422": (None, {"vector": [0.1] * 3}),
    "a vector of zeros: 422": (None, {"vector": [0.0] * 384}),
    "an unknown filter operator: 422": (None, {"vector": VECTOR, "filter": {"n": {"$x": 1}}}),
    "an unknown space: 422": (None, {"vector": VECTOR, "space": "nope"}),
    "hybrid without text: 422": (None, {"vector": VECTOR, "mode": "hybrid"}),
}


@pytest.mark.parametrize("case", list(ANSWERED_BY_THE_HOT_PATH))
def test_the_hot_path_answers_as_the_handler_does(client, people, hot_answers, case):
    user, headers = people["ann"]
    extra, body = ANSWERED_BY_THE_HOT_PATH[case]
    if extra == "ben":
        headers = people["ben"][1]
    elif extra:
        headers = extra
    hot = send(client, user, headers, body, JSON)
    assert hot_answers == [1], "the hot path did not answer"
    handled = send(client, user, headers, body, JSON_WITH_CHARSET)
    assert hot_answers == [1], "the hot path answered what it should leave to the handler"
    assert comparable(hot) == comparable(handled)
    assert hot.status_code < 500
    assert ("ratelimit-remaining" in hot.headers) == (hot.status_code != 401)


LEFT_TO_THE_HANDLER = {
    "k out of range: 422": ({"vector": VECTOR, "k": 0}, JSON),
    "an unknown field: 422": ({"vector": VECTOR, "colour": "red"}, JSON),
    "a number as a string": ({"vector": VECTOR, "k": "3"}, JSON),
    "not JSON: 400": (b'{"vector": [0.1, ', JSON),
    "an empty body": (b"", JSON),
    "not UTF-8": (b'{"query": "\xff\xfe"}', JSON),
    "another content type: 415": ({"vector": VECTOR}, "text/plain"),
}


@pytest.mark.parametrize("case", list(LEFT_TO_THE_HANDLER))
def test_what_may_differ_is_left_to_the_handler(client, db, people, hot_answers, case):
    user, headers = people["ann"]
    body, content_type = LEFT_TO_THE_HANDLER[case]
    answer = send(client, user, headers, body, content_type)
    assert hot_answers == []
    assert answer.status_code < 500
    assert "error" in answer.json() or answer.status_code == 200


def test_a_body_of_unknown_length_is_left_to_the_handler(client, people, hot_answers):
    user, headers = people["ann"]

    def chunks() -> Iterator[bytes]:  # sent chunked: no Content-Length
        yield json.dumps({"vector": VECTOR, "k": 1}).encode()

    answer = client.post(
        f"/v1/users/{user}/search", content=chunks(), headers={**headers, "Content-Type": JSON}
    )
    assert hot_answers == []
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["results"]) == 1


def search_handler(client: Any) -> Any:
    route = next(r for r in client.app.routes if r.path == "/v1/users/{user_id:str}/search")
    return route.route_handler_map["POST"][0]


def test_the_route_has_nothing_the_hot_path_would_skip(client):
    """The hot path runs every guard of the route itself; anything else that Litestar would
    run or add for the handler (a parameter it does not provide, a hook, response headers, a
    cache, other middleware, other exception handlers) must not exist, or the two paths
    would mean different things."""
    handler = search_handler(client)
    # the function's own parameters (Litestar's OpenAPI generation adds path parameters to
    # its parsed signature)
    assert set(inspect.signature(handler.fn).parameters) - {"self"} == PROVIDES
    layers = handler.ownership_layers
    assert [layer for layer in layers if getattr(layer, "after_request", None)] == []
    assert handler.resolve_after_response() is None
    assert handler.resolve_response_headers() == frozenset()
    assert handler.resolve_response_cookies() == frozenset()
    assert not handler.cache and handler.cache_control is None and handler.etag is None
    # innermost first: what wraps the hot path serves both paths; nothing may come between
    # the hot path and the handler
    kinds = [type(m) for m in handler.resolve_middleware()]
    assert kinds[0] is HotPath and kinds.count(HotPath) == 1
    assert handler.resolve_exception_handlers() == EXCEPTION_HANDLERS


def test_the_hot_path_checks_the_query_as_the_handler_does(client, people, hot_answers):
    """The route's ``before_request`` hook runs on the hot path too: a NUL in a query
    parameter is the same 422 on both paths."""
    user, headers = people["ann"]
    url = f"/v1/users/{user}/search?x=a%00b"
    raw = json.dumps({"vector": VECTOR}).encode()
    hot = client.post(url, content=raw, headers={**headers, "Content-Type": JSON})
    handled = client.post(url, content=raw, headers={**headers, "Content-Type": JSON_WITH_CHARSET})
    assert hot_answers == [1]
    assert comparable(hot) == comparable(handled) and hot.status_code == 422


def test_the_hot_path_refuses_an_unknown_query_parameter_as_the_handler_does(
    client, people, hot_answers
):
    """The search route takes no query parameter: any is the same 422 naming it on both
    paths, before the body is read."""
    user, headers = people["ann"]
    url = f"/v1/users/{user}/search?k=3"
    raw = json.dumps({"vector": VECTOR}).encode()
    hot = client.post(url, content=raw, headers={**headers, "Content-Type": JSON})
    handled = client.post(url, content=raw, headers={**headers, "Content-Type": JSON_WITH_CHARSET})
    assert hot_answers == [1]
    assert comparable(hot) == comparable(handled) and hot.status_code == 422
    assert "'k'" in hot.json()["error"]["message"]


def test_the_hot_path_runs_every_guard_of_the_route(client, people, hot_answers, monkeypatch):
    """A guard the route gains is run by the hot path too: here one that refuses everyone."""
    handler = search_handler(client)
    refused = []

    async def closed(connection: Any, route: Any) -> None:
        refused.append(1)
        raise Forbidden("closed for the test")

    monkeypatch.setattr(handler, "_resolved_guards", [*handler.resolve_guards(), closed])
    user, headers = people["ann"]
    answer = send(client, user, headers, {"vector": VECTOR}, JSON)
    assert (answer.status_code, answer.json()["error"]["message"]) == (403, "closed for the test")
    assert refused == [1] and hot_answers == [1]
