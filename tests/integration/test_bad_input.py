"""Bad input: a clear 4xx in the one error shape, never a trace, and nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import unquote

import pytest
from support.api import ADMIN, served_openapi

DIMS = 384
MEMORIES = "/v1/users/{user}/memories"
MEMORY = "/v1/users/{user}/memories/{memory}"
SEARCH = "/v1/users/{user}/search"
UNPROCESSABLE = {422}
UNDECODABLE = {400}


class Raw(NamedTuple):
    """A body sent byte for byte, for what ``json=`` cannot express."""

    data: bytes
    content_type: str = "application/json"


class Target(NamedTuple):
    user: str
    headers: dict[str, str]
    memory: str


def add(**item: Any) -> dict[str, Any]:
    return {"memories": [{"content": "Alice drinks tea.", **item}]}


def nested(depth: int) -> dict[str, Any]:
    """Metadata whose objects nest ``depth`` levels deep."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


def vector_json(first: str) -> bytes:
    """A search body whose vector starts with the literal ``first``."""
    rest = ", ".join(["0.1"] * (DIMS - 1))
    return f'{{"vector": [{first}, {rest}]}}'.encode()


def footprint(db: Any, user_id: str) -> tuple[Any, ...]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM memories WHERE user_id = %(user)s),"
        " (SELECT max(updated_at) FROM memories WHERE user_id = %(user)s),"
        " (SELECT count(*) FROM api_keys)",
        {"user": user_id},
    ).fetchone()
    return tuple(row)


@contextmanager
def nothing_written(db: Any, user_id: str) -> Iterator[None]:
    before = footprint(db, user_id)
    yield
    assert footprint(db, user_id) == before


def send(client: Any, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    if isinstance(body, Raw):
        headers = {**headers, "Content-Type": body.content_type}
        return client.request(method, url, content=body.data, headers=headers)
    return client.request(method, url, json=body, headers=headers)


def assert_error(answer: Any, statuses: set[int], code: str | None = None) -> None:
    """One documented error shape, the expected status, and no stack trace."""
    assert answer.status_code in statuses, answer.text
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    error = answer.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code


@pytest.fixture
def target(client, new_user) -> Target:
    """A user with one stored memory, so PATCH has something to (not) change."""
    user, headers = new_user()
    answer = client.post(MEMORIES.format(user=user), json=add(), headers=headers)
    assert answer.status_code == 202, answer.text
    return Target(user, headers, answer.json()["memories"][0]["id"])


def check_rejected(
    client,
    db,
    target: Target,
    method: str,
    path: str,
    body: Any,
    statuses: set[int],
    code: str | None = None,
) -> None:
    url = path.format(user=target.user, memory=target.memory)
    with nothing_written(db, target.user):
        assert_error(send(client, method, url, body, target.headers), statuses, code)


BAD_MEMORIES = [
    pytest.param(add(content=""), id="empty-content"),
    pytest.param(add(content=" \n\t "), id="whitespace-content"),
    pytest.param(add(content="a\u0000b"), id="nul-in-content"),
    pytest.param(add(content="x" * 32_001), id="content-over-32000-chars"),
    pytest.param({"memories": [{"content": "a"}], "colour": "red"}, id="unknown-field-in-body"),
    pytest.param(add(colour="red"), id="unknown-field-in-item"),
    pytest.param(add(metadata={"a": "b\u0000c"}), id="nul-in-metadata-string"),
    pytest.param(add(metadata={"a\u0000": 1}), id="nul-in-metadata-key"),
    pytest.param(add(metadata=nested(6)), id="metadata-deeper-than-5"),
    pytest.param(add(metadata={"blob": "x" * 16 * 1024}), id="metadata-over-16KiB"),
    pytest.param(add(metadata=[1, 2]), id="metadata-not-an-object"),
    pytest.param(add(importance=1.5), id="importance-above-1"),
    pytest.param(add(importance=-0.1), id="importance-below-0"),
    pytest.param(add(ttl_seconds=0), id="ttl-zero"),
    pytest.param(add(ttl_seconds=-5), id="ttl-negative"),
    pytest.param(add(ttl_seconds="soon"), id="ttl-not-a-number"),
    pytest.param(add(id="not-a-uuid"), id="id-not-a-uuid"),
    pytest.param(add(session_id="a b"), id="session-id-with-space"),
    pytest.param(
        add(session_id="s1\n"),
        id="session-id-with-trailing-newline",
    ),
    pytest.param({"memories": [{}]}, id="item-without-content"),
    pytest.param({"memories": []}, id="no-items"),
    pytest.param({"memories": [{"content": "m"}] * 1001}, id="batch-over-1000"),
]


@pytest.mark.parametrize("body", BAD_MEMORIES)
def test_bad_memories_are_rejected_and_nothing_is_stored(client, db, target, body):
    check_rejected(client, db, target, "POST", MEMORIES, body, UNPROCESSABLE)


BAD_SEARCHES = [
    pytest.param({"vector": [0.1] * (DIMS - 1)}, id="vector-too-short"),
    pytest.param({"vector": [0.1] * (DIMS + 1)}, id="vector-too-long"),
    pytest.param({"vector": []}, id="vector-empty"),
    pytest.param({"vector": [0.0] * DIMS}, id="vector-all-zeros"),
    pytest.param({"query": "x", "k": 0}, id="k-zero"),
    pytest.param({"query": "x", "k": 101}, id="k-101"),
    pytest.param({"query": "x", "vector": [0.1] * DIMS}, id="query-and-vector"),
    pytest.param({"k": 3}, id="neither-query-nor-vector"),
    pytest.param({"query": "   "}, id="blank-query"),
    pytest.param({"query": "a\u0000b"}, id="nul-in-query"),
    pytest.param({"query": "x", "colour": "red"}, id="unknown-field"),
    pytest.param({"query": "x", "space": "no-such-space"}, id="unknown-space"),
    pytest.param({"query": "x", "mode": "bogus"}, id="unknown-mode"),
    pytest.param({"query": "x", "threshold": 2}, id="threshold-above-1"),
    pytest.param({"query": "x", "types": ["bogus"]}, id="unknown-type"),
    pytest.param({"query": "x", "filter": {"$where": "1 = 1"}}, id="filter-where"),
    pytest.param({"query": "x", "filter": {"$ne": 1}}, id="filter-ne-without-field"),
    pytest.param({"query": "x", "filter": {"a": {"$where": "sleep(5)"}}}, id="filter-field-where"),
    pytest.param({"query": "x", "filter": {"a": {"$regex": ".*"}}}, id="filter-regex"),
    pytest.param({"query": "x", "filter": nested(6)}, id="filter-deeper-than-5"),
]


@pytest.mark.parametrize("body", BAD_SEARCHES)
def test_bad_searches_are_rejected(client, db, target, body):
    check_rejected(client, db, target, "POST", SEARCH, body, UNPROCESSABLE)


BAD_PATCHES = [
    pytest.param({"colour": "red"}, id="unknown-field"),
    pytest.param({"content": ""}, id="empty-content"),
    pytest.param({"content": "a\u0000b"}, id="nul-in-content"),
    pytest.param({"content": "x" * 32_001}, id="content-over-32000-chars"),
    pytest.param({"metadata": nested(6)}, id="metadata-deeper-than-5"),
    pytest.param({"metadata": {"a": "\u0000"}}, id="nul-in-metadata"),
    pytest.param({"importance": 1.5}, id="importance-above-1"),
    pytest.param({"ttl_seconds": 0}, id="ttl-zero"),
]


@pytest.mark.parametrize("body", BAD_PATCHES)
def test_bad_patches_change_nothing(client, db, target, body):
    check_rejected(client, db, target, "PATCH", MEMORY, body, UNPROCESSABLE)


NAN_METADATA = Raw(b'{"memories": [{"content": "a", "metadata": {"x": NaN}}]}')
HUGE_METADATA = Raw(b'{"memories": [{"content": "a", "metadata": {"x": 1e400}}]}')
HUGE_IMPORTANCE = Raw(b'{"memories": [{"content": "a", "importance": 1e400}]}')
TRUNCATED = Raw(b'{"memories": [{"content": "a"')
TRAILING_GARBAGE = Raw(b'{"memories": [{"content": "a"}]} trailing')
INVALID_UTF8 = Raw(b'{"memories": [{"content": "\xff\xfe"}]}')
FORM = Raw(b"content=a", "application/x-www-form-urlencoded")
EITHER = {400, 422}

BAD_BODIES = [
    pytest.param(SEARCH, Raw(vector_json("1e400")), EITHER, None, id="vector-1e400"),
    pytest.param(SEARCH, Raw(vector_json("-1e400")), EITHER, None, id="vector-minus-1e400"),
    pytest.param(SEARCH, Raw(vector_json("NaN")), UNDECODABLE, None, id="vector-nan-literal"),
    pytest.param(SEARCH, Raw(vector_json("Infinity")), UNDECODABLE, None, id="vector-infinity"),
    pytest.param(MEMORIES, NAN_METADATA, UNDECODABLE, None, id="metadata-nan-literal"),
    pytest.param(MEMORIES, HUGE_METADATA, EITHER, None, id="metadata-1e400"),
    pytest.param(MEMORIES, HUGE_IMPORTANCE, EITHER, None, id="importance-1e400"),
    pytest.param(MEMORIES, TRUNCATED, UNDECODABLE, "invalid_json", id="malformed-json"),
    pytest.param(MEMORIES, TRAILING_GARBAGE, UNDECODABLE, "invalid_json", id="trailing-garbage"),
    pytest.param(MEMORIES, INVALID_UTF8, UNDECODABLE, None, id="invalid-utf8"),
    pytest.param(MEMORIES, Raw(b"[]"), EITHER, None, id="array-not-object"),
    pytest.param(MEMORIES, Raw(b"null"), EITHER, None, id="null-body"),
    pytest.param(MEMORIES, Raw(b"Alice drinks tea.", "text/plain"), {415}, None, id="text-plain"),
    pytest.param(MEMORIES, FORM, {415}, None, id="form-encoded"),
    pytest.param(SEARCH, Raw(b'{"query": "x"}', "text/plain"), {415}, None, id="search-text-plain"),
]


@pytest.mark.parametrize(("path", "body", "statuses", "code"), BAD_BODIES)
def test_undecodable_bodies_are_rejected(client, db, target, path, body, statuses, code):
    check_rejected(client, db, target, "POST", path, body, statuses, code)


def test_body_over_10_mib_is_413(client, db, target):
    content = "x" * int(10.5 * 1024 * 1024)
    body = Raw(b'{"memories": [{"content": "' + content.encode() + b'"}]}')
    check_rejected(client, db, target, "POST", MEMORIES, body, {413})


BAD_LIST_QUERIES = [
    pytest.param({"cursor": "garbage"}, id="cursor-garbage"),
    pytest.param({"cursor": "!!!"}, id="cursor-not-base64"),
    pytest.param({"cursor": "YXxi"}, id="cursor-base64-of-a|b"),
    pytest.param({"cursor": "MjAyNC0wMS0wMXxub3QtYS11dWlk"}, id="cursor-bad-uuid"),
    pytest.param({"limit": 0}, id="limit-zero"),
    pytest.param({"limit": 101}, id="limit-101"),
    pytest.param({"limit": "many"}, id="limit-not-a-number"),
    pytest.param({"status": "bogus"}, id="unknown-status"),
]


@pytest.mark.parametrize("params", BAD_LIST_QUERIES)
def test_bad_list_queries_are_rejected(client, target, params):
    url = MEMORIES.format(user=target.user)
    answer = client.get(url, params=params, headers=target.headers)
    assert_error(answer, {400, 422})


BAD_USER_IDS = [
    pytest.param("u" * 129, id="129-chars"),
    pytest.param("a%20b", id="space"),
    pytest.param("a%2Fb", id="encoded-slash"),
    pytest.param("%C3%BCser", id="unicode"),
    pytest.param("a%00b", id="nul"),
    pytest.param("a'%3B--", id="quote-and-semicolon"),
    pytest.param(
        "alice%0A",
        id="trailing-newline",
    ),
]


@pytest.mark.parametrize("user_id", BAD_USER_IDS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_user_ids_are_rejected_even_for_admin(client, db, user_id, method):
    url = MEMORIES.format(user=user_id)
    decoded = unquote(user_id).replace("\x00", "")  # Postgres text cannot hold NUL at all
    with nothing_written(db, decoded):
        assert_error(send(client, method, url, add(), ADMIN), set(range(400, 500)))


@pytest.mark.parametrize(
    "hostile",
    [
        {"a'; DROP TABLE memories;--": "x"},
        {'b"); DELETE FROM api_keys;--': "'"},
        {"$or": [{"ok": 1}, {"x') OR 1=1 --": {"$gt": 0}}]},
        {"ok": {"$in": [{"nested": "object"}]}},
        {"ok": {"$gt": True}},
        {"ok": {"$exists": "yes"}},
        {"$and": []},
    ],
    ids=[
        "quote-key",
        "double-quote-key",
        "nested-hostile-key",
        "in-object",
        "gt-bool",
        "exists-string",
        "empty-and",
    ],
)
def test_hostile_filter_keys_and_operands_are_422(client, db, target, hostile):
    body = {"vector": [0.1] * DIMS, "filter": hostile}
    with nothing_written(db, target.user):
        answer = client.post(SEARCH.format(user=target.user), json=body, headers=target.headers)
    assert_error(answer, {422})
    assert db.execute("SELECT to_regclass('memories') IS NOT NULL").fetchone() == (True,)


OPERATIONS = sorted(
    (method.upper(), path)
    for path, operations in served_openapi()["paths"].items()
    for method in operations
)


def concrete(path: str, target: Target) -> str:
    """``path`` with its parameters filled in: the target's user and memory, ids elsewhere."""
    filled = path.replace("{user_id}", target.user).replace("{memory_id}", target.memory)
    for name in ("document_id", "batch_id", "item_id", "key_id"):
        filled = filled.replace(f"{{{name}}}", "00000000-0000-0000-0000-000000000001")
    return filled.replace("{session_id}", "s").replace("{name}", "minilm-384")


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_an_unknown_query_parameter_is_a_422_naming_it_on_every_route(
    client, db, target, method, path
):
    """Checked before anything is read or done: an erasure, a revocation or a write with a
    stray parameter does nothing."""
    url = concrete(path, target)
    with nothing_written(db, target.user):
        answer = client.request(method, url, params={"colour": "red"}, headers=ADMIN)
    assert_error(answer, UNPROCESSABLE, "invalid_input")
    assert "'colour'" in answer.json()["error"]["message"]


def test_every_unknown_parameter_is_named_with_what_the_route_takes(client, target):
    url = MEMORIES.format(user=target.user)
    params = {"limit": 5, "colour": "red", "sort": "asc"}
    answer = client.get(url, params=params, headers=target.headers)
    assert_error(answer, UNPROCESSABLE, "invalid_input")
    assert answer.json()["error"]["message"] == (
        "unknown query parameters 'colour', 'sort'; "
        "the route takes cursor, filter, limit, session_id, status"
    )
    answer = client.get(f"{MEMORY.format(user=target.user, memory=target.memory)}?x=1",
                        headers=target.headers)  # fmt: skip
    assert answer.json()["error"]["message"] == (
        "unknown query parameter 'x'; the route takes no query parameters"
    )


def test_declared_parameters_and_routes_outside_the_document_are_not_refused(client, target):
    url = MEMORIES.format(user=target.user)
    listed = client.get(url, params={"limit": 1, "status": "pending"}, headers=target.headers)
    assert listed.status_code == 200, listed.text
    # the OpenAPI document and a CORS preflight (which carries the request's query) take any
    assert client.get("/schema/openapi.json", params={"v": "1"}).status_code == 200
    preflight = client.options(url, params={"colour": "red"}, headers=ADMIN)
    assert preflight.status_code == 204, preflight.text


def test_an_unauthenticated_request_learns_nothing_of_the_parameters(client, target):
    answer = client.get(MEMORIES.format(user=target.user), params={"colour": "red"})
    assert_error(answer, {401}, "unauthenticated")
