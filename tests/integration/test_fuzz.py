"""Property-based fuzzing of every operation in our OpenAPI document, in-process, as admin.

Schemathesis draws requests from the document the app serves, valid ones and deliberately
broken ones. Whatever it sends, the answer is never a 5xx, a success matches the status, media
type, headers and schema the document gives for it, and an error comes in the one shape the
contract fixes: ``{"error": {"code": "...", "message": "..."}}``. Many answers are 4xx; that is
fine. Draws are derandomized, so a run in CI repeats the run on a laptop.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar import Litestar
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.api import ADMIN, add_memories, served_openapi

from models.embedding.spaces import MINILM_384
from service.http.app import create_app

# POST memories with "wait": true needs a worker to answer before the server-side timeout.
pytestmark = pytest.mark.usefixtures("worker")

USER_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
FUZZ_USER = f"fuzz-{uuid.uuid4().hex[:12]}"
Check = Callable[[Any, Any, Any], bool | None]


# Loaded at import so that each operation is a test of its own (schemathesis' lazy
# from_fixture loader fails under pytest 9). The first test checks the running app serves it.
DOCUMENT = served_openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
# an import's body is NDJSON: a drawn string goes as it is, like plain text
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


@pytest.fixture(scope="module")
def fuzz_app(settings, embedder) -> Iterator[Litestar]:
    """A second app over the same servers; schemathesis runs its lifespan in its own loop."""
    app = create_app(settings, embedders={MINILM_384.name: embedder})
    yield app
    shutdown_lifespans()


ERASE_USER = ("DELETE", "/v1/users/{user_id}")


@pytest.fixture(scope="module")
def pinned(client) -> dict[str, str]:
    """Real ids to put in paths, so that well-formed draws reach the database, not a 404."""
    memory = add_memories(client, FUZZ_USER, ADMIN, ["The fuzzer's own memory."])[0]
    return {"user_id": FUZZ_USER, "memory_id": memory["id"]}


def pin_path(case: Any, pinned: dict[str, str]) -> None:
    """Point well-formed path ids at real objects; malformed ones stay, to be refused."""
    params = case.path_parameters or {}
    if (case.method, case.path) == ERASE_USER:
        return  # never the fuzzer's own user: its pinned memory must survive
    if "user_id" in params and not USER_ID.fullmatch(str(params["user_id"])):
        params["user_id"] = pinned["user_id"]
    if "memory_id" in params and case.method in ("GET", "PATCH") and is_uuid(params["memory_id"]):
        params["memory_id"] = pinned["memory_id"]


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def one_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx answers ``{"error": {"code": str, "message": str}}``."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"].get("code"), str), body
    assert isinstance(body["error"].get("message"), str), body
    return None


CONFORMANCE_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CHECKS = [not_a_server_error, one_error_shape, *CONFORMANCE_CHECKS]


def test_the_fuzzed_document_is_the_one_served(client):
    served = client.get("/schema/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("ENGRAM_FUZZ_EXAMPLES", "25")),  # `make fuzz`: more
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_fuzzed_requests(case, fuzz_app, pinned):
    pin_path(case, pinned)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        case.body = declared_only(case.body, request_schema(case))
    case.call_and_validate(headers=ADMIN, checks=CHECKS, app=fuzz_app)


def request_schema(case: Any) -> dict[str, Any]:
    spec = DOCUMENT["paths"][case.operation.path][case.method.lower()]
    media = spec.get("requestBody", {}).get("content", {})
    schema: dict[str, Any] = media.get("application/json", {}).get("schema", {})
    return schema


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def declared_only(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` without the keys its schema does not declare.

    The server refuses unknown fields, but the document does not say so (no
    ``additionalProperties: false``), so valid draws would nearly all be 422s for a stray key
    and never reach the database.
    """
    schema = resolve(schema)
    for option in map(resolve, schema.get("oneOf", schema.get("anyOf", []))):
        if ("properties" in option and isinstance(value, dict)) or (
            "items" in option and isinstance(value, list)
        ):
            schema = option
            break
    if isinstance(value, list):
        return [declared_only(item, schema.get("items", {})) for item in value]
    if (
        not isinstance(value, dict)
        or "properties" not in schema
        or "additionalProperties" in schema
    ):
        return value
    declared = schema["properties"]
    return {k: declared_only(v, declared[k]) for k, v in value.items() if k in declared}


@pytest.mark.parametrize(
    ("status", "method", "path", "body"),
    [
        (400, "POST", "/v1/users/{user_id}/memories", b"{not json"),
        (401, "GET", "/v1/users/{user_id}/memories", None),
        (403, "GET", "/v1/users/{user_id}/memories", None),
        (404, "GET", "/v1/users/{user_id}/memories/{memory_id}", None),
        (422, "POST", "/v1/users/{user_id}/memories", {"memories": []}),
    ],
    ids=["400", "401", "403", "404", "422"],
)
def test_error_answers_are_documented(client, new_user, status, method, path, body):
    user, own_headers = new_user()
    headers = {401: {}, 403: new_user()[1]}.get(status, own_headers)
    path_parameters = {"user_id": user, "memory_id": str(uuid.uuid4())}
    url = path.format(**path_parameters)
    content = body if isinstance(body, bytes) else None
    answer = client.request(
        method,
        url,
        headers={**headers, "Content-Type": "application/json"},
        content=content,
        json=None if content else body,
    )
    assert answer.status_code == status, answer.text
    case = schema[path][method].Case(path_parameters=path_parameters)
    case.validate_response(answer, checks=[status_code_conformance, response_schema_conformance])


def test_adding_with_wait_documents_its_200(client):
    body = {"memories": [{"content": "Waited for."}], "wait": True}
    answer = client.post(f"/v1/users/{FUZZ_USER}/memories", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    case = schema["/v1/users/{user_id}/memories"]["POST"].Case(
        path_parameters={"user_id": FUZZ_USER}, body=body
    )
    case.validate_response(answer, checks=[status_code_conformance])


def ok_or_refused(answer: Any) -> None:
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text}"
    assert answer.is_success or answer.json()["error"]["code"] == "invalid_input", answer.text


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_an_importance_that_underflows_real_is_not_a_500(client, pinned, method):
    if method == "POST":
        body: dict[str, Any] = {"memories": [{"content": "tiny", "importance": 1e-300}]}
        answer = client.post(f"/v1/users/{FUZZ_USER}/memories", json=body, headers=ADMIN)
    else:  # a memory of its own: the fuzzer may have patched the pinned one to expire
        memory = add_memories(client, FUZZ_USER, ADMIN, ["to be patched"])[0]
        url = f"/v1/users/{FUZZ_USER}/memories/{memory['id']}"
        answer = client.patch(url, json={"importance": 1e-300}, headers=ADMIN)
    ok_or_refused(answer)


def test_a_vector_beyond_float32_is_a_422(client):
    body = {"vector": [1e39] + [0.1] * 383}
    answer = client.post(f"/v1/users/{FUZZ_USER}/search", json=body, headers=ADMIN)
    assert answer.status_code == 422, answer.text


def test_a_tiny_vector_is_a_direction_like_any_other(client, new_user):
    """Cosine ignores length: a vector too small for float32 ranks exactly as its unit
    vector does (it is scaled to unit length in float64 first), never a 500 or a 422."""
    user, headers = new_user()
    add_memories(client, user, headers, ["one", "two", "three"])
    url = f"/v1/users/{user}/search"
    tiny = client.post(url, json={"vector": [1e-300] * 384}, headers=ADMIN)
    unit = client.post(url, json={"vector": [1.0] * 384}, headers=ADMIN)
    assert tiny.status_code == unit.status_code == 200, tiny.text
    assert [r["id"] for r in tiny.json()["results"]] == [r["id"] for r in unit.json()["results"]]
