"""Hostile input is a 4xx naming what is wrong, never a 500, and changes nothing: bodies nested
too deeply, numbers beyond any column or float, NUL and oversized values in query parameters,
times that cannot be read back, ids that clash across item types, and hostile import lines.
Property-based: hypothesis draws the values (``make fuzz`` draws more)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.api import ADMIN, add_memories, served_openapi

pytestmark = pytest.mark.usefixtures("worker")

EXAMPLES = int(os.environ.get("ENGRAM_FUZZ_EXAMPLES", "25"))
DRAWS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PATHS = served_openapi()["paths"]
JSON_BODIED = sorted(
    (method.upper(), path)
    for path, operations in PATHS.items()
    for method, operation in operations.items()
    if path.startswith("/v1/")
    and "application/json" in operation.get("requestBody", {}).get("content", {})
)
WITH_QUERY = sorted(
    (method.upper(), path, tuple(p["name"] for p in operation.get("parameters", ())
                                 if p["in"] == "query"))
    for path, operations in PATHS.items()
    for method, operation in operations.items()
    if path.startswith("/v1/") and any(p["in"] == "query" for p in operation.get("parameters", ()))
)  # fmt: skip
SOME_UUID = "00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def victim(client) -> str:
    """A user with a memory, whose data no hostile request may change."""
    user = f"hostile-{uuid.uuid4().hex[:8]}"
    add_memories(client, user, ADMIN, ["Quinn keeps bees."], metadata={"n": 1})
    return user


def concrete(path: str, user: str) -> str:
    for name in ("memory_id", "document_id", "batch_id", "item_id", "key_id"):
        path = path.replace(f"{{{name}}}", SOME_UUID)
    return path.replace("{user_id}", user).replace("{session_id}", "s").replace("{name}", "x")


def footprint(db: Any, user: str) -> list[Any]:
    return db.execute(
        "SELECT id, content, metadata, content_hash FROM memories WHERE user_id = %s ORDER BY id",
        [user],
    ).fetchall()


@pytest.mark.parametrize(("method", "path"), JSON_BODIED)
@pytest.mark.parametrize("depth", [200, 5000, 100_000])
def test_a_body_nested_too_deeply_is_a_400(client, db, victim, method, path, depth):
    before = footprint(db, victim)
    nested = b"[" * depth + b"]" * depth
    for body in (nested, b'{"a": ' + nested + b"}"):
        answer = client.request(
            method,
            concrete(path, victim),
            content=body,
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert 400 <= answer.status_code < 500, answer.text
        assert "error" in answer.json()
    assert footprint(db, victim) == before


hostile_values = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from("\x00a%\n\\\"'"), max_size=20),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.just("9" * 5000),
    st.just("-1"),
    st.just("NaN"),
)


@pytest.mark.parametrize(("method", "path", "names"), WITH_QUERY)
@DRAWS
@given(values=st.lists(hostile_values, min_size=1, max_size=4))
def test_hostile_query_parameters_are_never_a_500(client, victim, method, path, names, values):
    params = {name: value for name, value in zip(names, values, strict=False)}
    answer = client.request(method, concrete(path, victim), params=params, headers=ADMIN)
    assert answer.status_code < 500, (params, answer.text)
    if answer.status_code >= 400:
        assert "error" in answer.json()


def test_a_nul_in_a_query_parameter_is_a_422_naming_it(client, victim):
    answer = client.get(f"/v1/users/{victim}/memories?session_id=a%00b", headers=ADMIN)
    assert answer.status_code == 422
    assert "session_id" in answer.json()["error"]["message"]


numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(10**400),
    st.just(-(10**400)),
    st.just(1e308),
)


@DRAWS
@given(stored=numbers, compared=numbers, op=st.sampled_from(["$gt", "$gte", "$lt", "$lte", "$eq"]))
def test_numbers_of_any_size_are_stored_and_compared_never_a_500(
    client, new_user, stored, compared, op
):
    user, headers = new_user()
    wrote = client.post(
        f"/v1/users/{user}/memories",
        content=json.dumps({"memories": [{"content": "n", "metadata": {"n": stored}}]}),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert wrote.status_code in (202, 422), wrote.text
    found = client.post(
        f"/v1/users/{user}/search",
        content=json.dumps({"vector": [0.1] * 384, "filter": {"n": {op: compared}}}),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert found.status_code in (200, 422), found.text


def test_a_memory_may_not_take_the_id_of_a_chunk(client, new_user, db):
    user, headers = new_user()
    added = client.post(
        f"/v1/users/{user}/documents",
        json={"documents": [{"content": "Bees make honey."}]},
        headers=headers,
    )
    document = added.json()["documents"][0]["id"]
    chunk = client.get(f"/v1/users/{user}/documents/{document}/chunks", headers=headers)
    chunk_id = chunk.json()["chunks"][0]["id"]
    clash = client.post(
        f"/v1/users/{user}/memories",
        json={"memories": [{"content": "mine now", "id": chunk_id}]},
        headers=headers,
    )
    assert clash.status_code == 409, clash.text
    assert chunk_id in clash.json()["error"]["message"]
    assert db.execute("SELECT count(*) FROM memories WHERE user_id = %s", [user]).fetchone() == (0,)


def export_of(client, user: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/users/{user}/export", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines()]


def import_lines(client, user: str, rows: list[dict[str, Any]]) -> Any:
    body = "\n".join(json.dumps(row, default=str) for row in rows).encode()
    return client.post(
        f"/v1/users/{user}/import",
        content=body,
        headers={**ADMIN, "Content-Type": "application/x-ndjson"},
    )


def test_an_imported_chunk_may_not_take_the_id_of_a_memory(client, new_user):
    user, headers = new_user()
    memory = add_memories(client, user, headers, ["Rosa paints."])[0]
    other, other_headers = new_user()
    added = client.post(
        f"/v1/users/{other}/documents",
        json={"documents": [{"content": "A chunk to be."}]},
        headers=other_headers,
    )
    assert added.status_code == 202
    rows = export_of(client, other)
    chunk = next(row for row in rows if row["type"] == "chunk")
    rows = [row for row in rows if row["type"] != "vector"]
    rows[-1]["counts"]["vector"] = 0
    chunk["id"] = memory["id"]
    answer = import_lines(client, user, rows)
    assert answer.status_code == 409, answer.text
    got = client.get(f"/v1/users/{user}/memories/{memory['id']}", headers=headers).json()
    assert got["status"] == "ready" and got["content"] == "Rosa paints."


def offsets() -> st.SearchStrategy[timezone]:
    return st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


extreme_times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 3), timezones=offsets()),
    st.datetimes(min_value=datetime(9999, 12, 29), timezones=offsets()),
    st.datetimes(timezones=offsets()),
)
extreme_ints = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.just(2**31))


@DRAWS
@given(
    when=extreme_times,
    field=st.sampled_from(["created_at", "updated_at", "expires_at"]),
    number=extreme_ints,
    where=st.sampled_from(["seq", "generation", "chunk_index", "tokens"]),
)
def test_hostile_import_lines_are_refused_or_read_back(
    client, new_user, when, field, number, where
):
    """An import either succeeds, and then everything of the user reads back, or is a 4xx
    that changed nothing."""
    source, source_headers = new_user()
    client.post(f"/v1/users/{source}/sessions", json={"id": "s"}, headers=source_headers)
    client.post(
        f"/v1/users/{source}/sessions/s/messages",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers=source_headers,
    )
    client.post(
        f"/v1/users/{source}/documents",
        json={"documents": [{"content": "Doc text."}]},
        headers=source_headers,
    )
    rows = [row for row in export_of(client, source) if row["type"] != "vector"]
    rows[-1]["counts"]["vector"] = 0
    rows.insert(1, {"type": "memory", "id": str(uuid.uuid4()), "content": "timed",
                    "space": "minilm-384", field: when.isoformat()})  # fmt: skip
    rows[-1]["counts"]["memory"] = rows[-1]["counts"].get("memory", 0) + 1
    for row in rows:
        if where in row:
            row[where] = number
    user, headers = new_user()
    answer = import_lines(client, user, rows)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert export_of(client, user)[1:-1] == []  # nothing was written
        return
    for path in ("memories", "documents", "sessions", "export"):
        read = client.get(f"/v1/users/{user}/{path}", headers=headers)
        assert read.status_code == 200, (path, read.text)
    assert (
        client.post(
            f"/v1/users/{user}/search", json={"query": "timed"}, headers=headers
        ).status_code
        == 200
    )


def test_a_time_that_cannot_be_read_back_is_refused_naming_it(client, new_user):
    user, _ = new_user()
    early = datetime(1, 1, 1, 3, tzinfo=timezone(timedelta(hours=14)))
    rows = [
        {"type": "header", "format": "engram.export", "version": 1, "user_id": user,
         "exported_at": datetime.now(UTC).isoformat(),
         "spaces": [{"name": "minilm-384", "dims": 384, "provider": "sentence-transformers",
                     "model": "sentence-transformers/all-MiniLM-L6-v2"}]},
        {"type": "memory", "id": str(uuid.uuid4()), "content": "old", "space": "minilm-384",
         "created_at": early.isoformat()},
        {"type": "end", "counts": {"memory": 1}},
    ]  # fmt: skip
    answer = import_lines(client, user, rows)
    assert answer.status_code == 422, answer.text
    assert "line 2: created_at" in answer.json()["error"]["message"]
