"""Isolation between users, generated from the OpenAPI document that the app serves.

Every operation under ``/v1/users/{user_id}`` is called by bob on alice's path (403), on his own
path with alice's object ids (404) and on his own path with his own objects (2xx). No answer may
carry anything of alice's that bob did not send himself, and none may change anything of hers.
A route added later is covered the day it appears, or this file fails saying what it cannot
build a request for (teach it through KNOWN_BODIES or OBJECT_MAKERS).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import psycopg
import pytest
from litestar.testing import TestClient
from psycopg import sql
from support.api import ADMIN, add_memories, served_openapi
from support.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")

HTTP_METHODS = ("get", "put", "post", "patch", "delete")
# /v1 routes without a user in the path that a user's key may call; every other one is admin-only.
OPEN_TO_USER_KEYS = {"GET /v1/spaces", "GET /v1/spaces/{name}"}
FACTS = {
    "alice": [
        "Alice drinks an oat milk flat white every morning",
        "Alice's locker code at the gym is 4711",
        "Alice is allergic to hazelnuts",
    ],
    "bob": [
        "Bob drinks green tea in the afternoon",
        "Bob's bicycle lock code is 1234",
    ],
}


class CannotBuild(Exception):
    """The test does not know how to build a valid request for an operation."""


class Raw(NamedTuple):
    """A body that is not JSON, sent byte for byte."""

    content: bytes
    content_type: str


class Operation(NamedTuple):
    method: str
    path: str
    spec: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def object_params(self) -> list[str]:
        return [name for name in self.path_params if name != "user_id"]


class Request(NamedTuple):
    method: str
    url: str
    params: dict[str, Any]
    body: Any

    def text(self) -> str:
        """Everything the caller named in this request, to tell echoes from leaks."""
        body = (
            self.body.content.decode(errors="replace")
            if isinstance(self.body, Raw)
            else json.dumps(self.body)
        )
        return f"{self.url} {json.dumps(self.params)} {body}".lower()


@dataclass
class Person:
    name: str
    user_id: str
    headers: dict[str, str]
    marker: str  # in every text, metadata value and session id of theirs
    contents: list[str] = field(default_factory=list)
    memory_ids: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)  # every id the service handed them
    objects: dict[str, str] = field(default_factory=dict)  # path parameter -> one of their ids
    missing: dict[str, str] = field(default_factory=dict)  # path parameter -> why there is none
    footprint: dict[str, Any] = field(default_factory=dict)  # their rows, as first stored

    @property
    def tag(self) -> str:
        return f"tag-{self.marker}"

    @property
    def session_id(self) -> str:
        return f"s-{self.marker}"

    def secrets(self) -> set[str]:
        """What must never reach another user: the marker, their ids, their user id."""
        return {self.marker, self.user_id, *self.ids, *(i.replace("-", "") for i in self.ids)}


def operations_of(document: dict[str, Any]) -> list[Operation]:
    return [
        Operation(method.upper(), path, spec)
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in HTTP_METHODS
    ]


DOCUMENT = served_openapi()
OPERATIONS = operations_of(DOCUMENT)
V1 = [op for op in OPERATIONS if op.path.startswith("/v1/")]
PER_USER = [op for op in V1 if "{user_id}" in op.path]
WITH_OBJECT_IDS = [op for op in PER_USER if op.object_params]
NOT_PER_USER = [op for op in V1 if "{user_id}" not in op.path]


def memory_body(owner: Person, author: Person) -> dict[str, Any]:
    return {
        "memories": [
            {
                "content": f"{author.name} wrote this ({author.marker})",
                "metadata": {"t": author.tag},
            }
        ],
        "wait": True,
    }


def upload_body(owner: Person, author: Person) -> Raw:
    """A multipart upload of one text file holding the author's marker."""
    boundary = "engram-isolation-boundary"
    text = f"{author.name} uploaded this ({author.marker})"
    content = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="files"; filename="note.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
        f"{text}\r\n--{boundary}--\r\n"
    ).encode()
    return Raw(content, f"multipart/form-data; boundary={boundary}")


def import_body(owner: Person, author: Person) -> Raw:
    """An export (docs/api.md, "Export") of one memory holding the author's marker."""
    rows = [
        {"type": "header", "format": "engram.export", "version": 1, "user_id": author.user_id,
         "exported_at": datetime.now(UTC).isoformat(), "spaces": []},
        {"type": "memory", "id": str(uuid.uuid4()), "space": "minilm-384", "metadata":
         {"t": author.tag}, "content": f"{author.name} imported this ({author.marker})"},
        {"type": "end", "counts": {"memory": 1}},
    ]  # fmt: skip
    return Raw("".join(json.dumps(row) + "\n" for row in rows).encode(), "application/x-ndjson")


# Known-good bodies, keyed by operation, for what a minimal body from the schema cannot express.
KNOWN_BODIES: dict[str, Callable[[Person, Person], Any]] = {
    "POST /v1/users/{user_id}/memories": memory_body,
    "POST /v1/users/{user_id}/documents/files": upload_body,
    "POST /v1/users/{user_id}/import": import_body,
    "PATCH /v1/users/{user_id}/memories/{memory_id}": lambda owner, author: {
        "content": f"{author.name} rewrote this ({author.marker})",
        "metadata": {"t": author.tag},
    },
    "POST /v1/users/{user_id}/search": lambda owner, author: {
        "query": f"what does {owner.name} drink?",
        "k": 100,
        "threshold": -1,
    },
    "POST /v1/keys": lambda owner, author: {"user_id": owner.user_id},
}


class World:
    """The API, its OpenAPI document and the people in it."""

    def __init__(self, client: TestClient[Any], database_url: str) -> None:
        self.client = client
        self.database_url = database_url
        self.by_name = {str(op): op for op in OPERATIONS}

    def enrol(self, name: str) -> Person:
        """A user with a key, memories holding their marker, and one object per path parameter."""
        marker = f"{name}{uuid.uuid4().hex}"
        user_id = f"{name}-{uuid.uuid4().hex[:12]}"
        answer = self.client.post("/v1/keys", json={"user_id": user_id}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        key = answer.json()
        person = Person(name, user_id, {"Authorization": f"Bearer {key['key']}"}, marker)
        person.ids.add(key["id"])
        person.objects["key_id"] = key["id"]
        contents = [f"{fact} ({marker})" for fact in FACTS[name]]
        stored = add_memories(
            self.client,
            user_id,
            person.headers,
            contents,
            metadata={"topic": "habits", "t": person.tag},
            session_id=person.session_id,
        )
        person.contents = contents
        person.memory_ids = {m["id"] for m in stored}
        person.ids |= person.memory_ids
        # item_id: the id of an embedded item, as the admin's job routes take it
        person.objects["memory_id"] = person.objects["item_id"] = stored[0]["id"]
        # name: an embedding space, as the spaces routes take it (not per-user)
        person.objects["name"] = "minilm-384"
        self.make_objects(person)
        # what the creates sent to be embedded settles first: later checks compare snapshots
        wait_until(lambda: self.settled(person), what=f"{name}'s objects to be embedded")
        return person

    def settled(self, person: Person) -> bool:
        spaces = self.client.get("/v1/spaces", headers=person.headers).json()
        return all(space["counts"]["pending"] == 0 for space in spaces)

    def make_objects(self, person: Person) -> None:
        for param in sorted({p for op in PER_USER for p in op.object_params}):
            if param not in person.objects:
                try:
                    person.objects[param] = self.make_object(person, param)
                except CannotBuild as exc:
                    person.missing[param] = str(exc)
        # objects a client may name on a create that has no path of their own (messages)
        for op in client_id_creates():
            param = object_param_of(op.path)
            if param not in person.objects:
                try:
                    person.objects[param] = self.made_by(op, person, param)
                except CannotBuild as exc:
                    person.missing[param] = str(exc)
        # ids that another create answered (a batch_id, say) fill what had no POST of its own
        person.missing = {p: why for p, why in person.missing.items() if p not in person.objects}

    def make_object(self, person: Person, param: str) -> str:
        """One of ``person``'s objects for ``param``, made by the POST on the collection above."""
        if param in OBJECT_MAKERS:
            return OBJECT_MAKERS[param](self, person)
        path = next(op.path for op in PER_USER if param in op.object_params)
        collection = path[: path.index("{" + param + "}")].rstrip("/")
        maker = self.by_name.get(f"POST {collection}")
        if maker is None:
            raise CannotBuild(f"no POST {collection} to make an object for {{{param}}}")
        return self.made_by(maker, person, param)

    def made_by(self, maker: Operation, person: Person, param: str) -> str:
        """The id of what ``maker`` (a POST) created for ``person``, noting every id it answered."""
        request = self.build(maker, owner=person, objects=person, author=person)
        answer = self.send(request, person.headers)
        if not answer.is_success:
            raise CannotBuild(f"{maker} answered {answer.status_code}: {answer.text[:300]}")
        made = created_id(answer.json())
        if made is None:
            raise CannotBuild(f"{maker} answered no id for {{{param}}}: {answer.text[:300]}")
        for key, value in answer.json().items():
            if key.endswith("_id") and key != "user_id" and isinstance(value, str):
                person.objects.setdefault(key, value)
                person.ids.add(value)
        person.ids.add(made)
        return made

    def object_id(self, person: Person, param: str, op: Operation) -> str:
        if param == "user_id":
            return person.user_id
        if param in person.objects:
            return person.objects[param]
        if "{user_id}" in op.path:
            why = person.missing.get(param, "no object made for it")
            raise CannotBuild(f"path parameter {{{param}}}: {why}")
        return str(self.value(parameter_schema(op, param), person.marker))

    def build(self, op: Operation, *, owner: Person, objects: Person, author: Person) -> Request:
        """A valid request for ``op``: ``owner``'s path, ``objects``' ids, ``author``'s body."""
        url = op.path
        for param in op.path_params:
            value = owner.user_id if param == "user_id" else self.object_id(objects, param, op)
            url = url.replace("{" + param + "}", quote(value, safe=""))
        params = {
            p["name"]: self.value(p.get("schema", {}), author.marker)
            for p in op.spec.get("parameters", [])
            if p["in"] == "query" and p.get("required")
        }
        return Request(op.method, url, params, self.body(op, owner, author))

    def body(self, op: Operation, owner: Person, author: Person) -> Any:
        if str(op) in KNOWN_BODIES:
            return KNOWN_BODIES[str(op)](owner, author)
        request_body = op.spec.get("requestBody")
        if request_body is None:
            return None
        media = request_body.get("content", {})
        if "application/json" not in media:
            raise CannotBuild(f"{op} takes {sorted(media)}: add a known-good body to KNOWN_BODIES")
        return self.value(media["application/json"].get("schema", {}), author.marker)

    def value(self, schema: dict[str, Any], text: str) -> Any:
        """A minimal valid value of ``schema``: required fields only, strings made of ``text``."""
        schema = resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return next(v for v in schema["enum"] if v is not None)
        for combinator in ("oneOf", "anyOf", "allOf"):
            if combinator in schema:
                options = [o for o in schema[combinator] if resolve(o).get("type") != "null"]
                return self.value(options[0], text)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next(k for k in kind if k != "null")
        return self.typed_value(kind, schema, text)

    def typed_value(self, kind: Any, schema: dict[str, Any], text: str) -> Any:
        if kind == "object":
            required = schema.get("required", [])
            return {
                k: self.value(v, text)
                for k, v in schema.get("properties", {}).items()
                if k in required
            }
        if kind == "array":
            return [self.value(schema.get("items", {}), text)] * max(1, schema.get("minItems", 0))
        if kind == "string":
            return string_value(schema, text)
        if kind in ("integer", "number"):
            return schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        if kind == "boolean":
            return False
        raise CannotBuild(f"no minimal value for the schema {schema}: add a known-good body")

    def send(self, request: Request, headers: dict[str, str]) -> httpx.Response:
        body: dict[str, Any] = {"json": request.body}
        if isinstance(request.body, Raw):
            headers = {**headers, "Content-Type": request.body.content_type}
            body = {"content": request.body.content}
        return self.client.request(
            request.method, request.url, params=request.params, headers=headers, **body
        )

    def call(
        self, op: Operation, *, caller: Person, owner: Person, objects: Person
    ) -> tuple[Request, httpx.Response]:
        """Send ``op`` with ``caller``'s key and body, failing loudly if it cannot be built."""
        request = self.request(op, owner=owner, objects=objects, author=caller)
        return request, self.send(request, caller.headers)

    def request(self, op: Operation, *, owner: Person, objects: Person, author: Person) -> Request:
        try:
            return self.build(op, owner=owner, objects=objects, author=author)
        except CannotBuild as exc:
            pytest.fail(f"{op}: cannot build a request: {exc}", pytrace=False)


# Path parameters whose objects the POST on the collection above them cannot make.
OBJECT_MAKERS: dict[str, Callable[[World, Person], str]] = {}


def created_id(answer: Any) -> str | None:
    """The id of what a create answered: its own ``id``, or that of the first item it lists."""
    if not isinstance(answer, dict):
        return None
    if isinstance(answer.get("id"), str):
        return str(answer["id"])
    for value in answer.values():
        if isinstance(value, list) and value and isinstance(value[0], dict) and "id" in value[0]:
            return str(value[0]["id"])
    return None


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = DOCUMENT["components"]["schemas"][name]
    return schema


def string_value(schema: dict[str, Any], text: str) -> str:
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("format") == "date-time":
        return datetime.now(UTC).isoformat()
    return text[: schema.get("maxLength", len(text))]


def parameter_schema(op: Operation, name: str) -> dict[str, Any]:
    found = [p for p in op.spec.get("parameters", []) if p["name"] == name]
    return dict(found[0].get("schema", {})) if found else {"type": "string", "format": "uuid"}


def has_client_ids(op: Operation) -> bool:
    """Whether the request body lets the client choose an object's ``id``."""
    media = op.spec.get("requestBody", {}).get("content", {})
    schema = media.get("application/json", {}).get("schema")
    return schema is not None and "id" in property_names(schema)


def property_names(schema: dict[str, Any], depth: int = 0) -> set[str]:
    schema = resolve(schema)
    if depth > 8:
        return set()
    found = set(schema.get("properties", {}))
    nested = [
        *schema.get("properties", {}).values(),
        *([schema["items"]] if "items" in schema else []),
        *schema.get("oneOf", []),
        *schema.get("anyOf", []),
    ]
    for child in nested:
        found |= property_names(child, depth + 1)
    return found


def object_param_of(collection: str) -> str:
    """``/v1/users/{user_id}/memories`` -> ``memory_id``: the path parameter of its items."""
    plural = collection.rstrip("/").rsplit("/", 1)[-1]
    singular = plural[:-3] + "y" if plural.endswith("ies") else plural.removesuffix("s")
    return f"{singular}_id"


def with_client_id(body: Any, schema: dict[str, Any], client_id: str) -> Any:
    """``body`` with every object that may carry an ``id`` carrying ``client_id``."""
    schema = resolve(schema)
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            schema = resolve(
                next(o for o in schema[combinator] if resolve(o).get("type") != "null")
            )
    if isinstance(body, list):
        return [with_client_id(item, schema.get("items", {}), client_id) for item in body]
    if not isinstance(body, dict):
        return body
    properties = schema.get("properties", {})
    changed = {k: with_client_id(v, properties.get(k, {}), client_id) for k, v in body.items()}
    return {**changed, "id": client_id} if "id" in properties else changed


def footprint(database_url: str, user_id: str) -> dict[str, tuple[int, str]]:
    """Count and digest of the user's rows in every table with a user_id column."""
    digest = sql.SQL(
        "SELECT count(*), md5(coalesce(string_agg(r, ',' ORDER BY r), '')) FROM "
        "(SELECT (to_jsonb(t) - 'last_used_at')::text AS r FROM {} AS t WHERE user_id = %s) AS rows"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'user_id' ORDER BY 1"
        ).fetchall()
        return {
            table: tuple(conn.execute(digest.format(sql.Identifier(table)), [user_id]).fetchone())
            for (table,) in tables
        }


def settled_footprint(database_url: str, user_id: str, *, timeout: float = 30) -> dict[str, Any]:
    """The footprint once background work on the user's items has stopped changing it."""
    deadline = time.monotonic() + timeout
    before = footprint(database_url, user_id)
    while True:
        time.sleep(0.3)
        now = footprint(database_url, user_id)
        if now == before or time.monotonic() > deadline:
            return now
        before = now


def assert_nothing_of(person: Person, request: Request, answer: httpx.Response) -> None:
    """The answer carries nothing of ``person``'s beyond what the request itself named."""
    seen = (answer.text + " " + " ".join(answer.headers.values())).lower()
    sent = request.text()
    leaked = sorted(s for s in person.secrets() if s.lower() in seen and s.lower() not in sent)
    assert not leaked, (
        f"{request.method} {request.url} answered {answer.status_code} with {person.name}'s "
        f"{leaked}: {answer.text[:500]}"
    )


def assert_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, f"want {status}, got {answer.status_code}: {answer.text}"
    assert answer.json()["error"]["code"] == code, answer.text


@pytest.fixture(scope="module")
def world(client: TestClient[Any], servers: Any) -> World:
    return World(client, servers.database_url)


@pytest.fixture(scope="module")
def alice(world: World) -> Person:
    """Alice and what she holds; every test leaves all of it exactly as it was."""
    person = world.enrol("alice")
    person.footprint = settled_footprint(world.database_url, person.user_id)
    # a digest that cannot see her rows (row-level security, say) would prove nothing
    assert person.footprint["memories"][0] >= len(FACTS["alice"]), person.footprint
    return person


@pytest.fixture
def bob(world: World) -> Person:
    """A fresh bob for each test: destructive calls on his own path harm no other test."""
    return world.enrol("bob")


def assert_untouched(world: World, alice: Person) -> None:
    now = footprint(world.database_url, alice.user_id)
    assert now == alice.footprint, "a request by someone else changed alice's data"


def test_the_generated_routes_are_the_ones_served(client):
    served = client.get("/schema/openapi.json")
    assert served.status_code == 200
    assert sorted(map(str, operations_of(served.json()))) == sorted(map(str, OPERATIONS))
    assert PER_USER and WITH_OBJECT_IDS and NOT_PER_USER


@pytest.mark.parametrize("op", PER_USER, ids=str)
def test_another_users_key_is_forbidden(world, alice, bob, op):
    request, answer = world.call(op, caller=bob, owner=alice, objects=alice)
    assert_error(answer, 403, "forbidden")
    assert_nothing_of(alice, request, answer)
    assert_untouched(world, alice)


@pytest.mark.parametrize("op", WITH_OBJECT_IDS, ids=str)
def test_another_users_object_ids_are_not_found(world, alice, bob, op):
    """Her ids on his path answer exactly as ids that exist nowhere: existence does not leak."""
    request, answer = world.call(op, caller=bob, owner=bob, objects=alice)
    assert_error(answer, 404, "not_found")
    assert_nothing_of(alice, request, answer)
    assert_untouched(world, alice)
    ghost = Person("ghost", bob.user_id, {}, "ghost")
    ghost.objects = {param: str(uuid.uuid4()) for param in alice.objects}
    _, unknown = world.call(op, caller=bob, owner=bob, objects=ghost)
    assert without_ids(answer.text, alice) == without_ids(unknown.text, ghost)


def without_ids(text: str, objects: Person) -> str:
    for value in objects.objects.values():
        text = text.replace(value, "<id>")
    return text


@pytest.mark.parametrize("op", PER_USER, ids=str)
def test_own_routes_answer_and_carry_nothing_of_others(world, alice, bob, op):
    request, answer = world.call(op, caller=bob, owner=bob, objects=bob)
    assert answer.is_success, f"{op} for its own user: {answer.status_code} {answer.text[:500]}"
    assert_nothing_of(alice, request, answer)
    assert_untouched(world, alice)


@pytest.mark.parametrize("credentials", [None, "Bearer egm_not-a-key"], ids=["no-key", "bad-key"])
@pytest.mark.parametrize("op", V1, ids=str)
def test_v1_needs_a_valid_key(world, alice, op, credentials):
    request = world.request(op, owner=alice, objects=alice, author=alice)
    answer = world.send(request, {"Authorization": credentials} if credentials else {})
    assert_error(answer, 401, "unauthenticated")
    assert_untouched(world, alice)


@pytest.mark.parametrize("op", NOT_PER_USER, ids=str)
def test_routes_without_a_user_are_admin_only(world, alice, bob, op):
    request, answer = world.call(op, caller=bob, owner=alice, objects=alice)
    if str(op) in OPEN_TO_USER_KEYS:
        assert answer.is_success, answer.text
    else:
        assert_error(answer, 403, "forbidden")
    assert_nothing_of(alice, request, answer)
    assert_untouched(world, alice)


def client_id_creates() -> list[Operation]:
    return [op for op in PER_USER if op.method == "POST" and has_client_ids(op)]


@pytest.mark.parametrize("hers", ["her-id", "her-id-and-content"])
@pytest.mark.parametrize("op", client_id_creates(), ids=str)
def test_client_chosen_ids_reveal_nothing(world, alice, bob, op, hers):
    """Creating with alice's id answers as with a fresh one: no existence oracle, none of hers."""
    param = object_param_of(op.path)
    if param not in alice.objects:
        pytest.fail(f"{op}: alice has no object for {{{param}}}: {alice.missing.get(param)}")
    schema = op.spec["requestBody"]["content"]["application/json"]["schema"]
    text = alice.contents[0] if hers == "her-id-and-content" else bob.marker
    statuses = []
    for client_id in (str(uuid.uuid4()), alice.objects[param]):
        body = with_client_id(world.value(schema, text), schema, client_id)
        request = world.request(op, owner=bob, objects=bob, author=bob)._replace(body=body)
        answer = world.send(request, bob.headers)
        assert answer.is_success, f"{body}: {answer.status_code} {answer.text[:500]}"
        assert_nothing_of(alice, request, answer)
        statuses.append(answer.status_code)
    assert statuses[0] == statuses[1], statuses
    assert_untouched(world, alice)


# Searches by bob that alice's items would match, and which of his own they find: all his
# items, his memories only (a filter on their metadata), or none.
SEARCHES = {
    "her-words": ({"query": "What does Alice drink every morning?"}, "all"),
    "her-fact": ({"query": FACTS["alice"][0]}, "all"),
    "her-tag": ({"query": FACTS["alice"][0], "filter": {"t": "<alice-tag>"}}, "none"),
    "her-session": ({"query": FACTS["alice"][0], "session_id": "<alice-session>"}, "none"),
    "shared-topic": ({"query": FACTS["alice"][1], "filter": {"topic": "habits"}}, "memories"),
}


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_searches_that_match_her_items_find_only_his(world, alice, bob, name, mode):
    template, finds = SEARCHES[name]
    body = json.loads(
        json.dumps(template)
        .replace("<alice-tag>", alice.tag)
        .replace("<alice-session>", alice.session_id)
    )
    found = search_as_bob(world, alice, bob, {**body, "mode": mode})
    expected = {"all": searchable(world, bob), "memories": bob.memory_ids, "none": set()}
    assert found == expected[finds]


def test_searches_by_her_vector_find_only_his(world, alice, bob, embedder):
    vector = embedder.encode([alice.contents[0]])[0].tolist()
    found = search_as_bob(world, alice, bob, {"vector": vector, "mode": "vector"})
    assert found == searchable(world, bob)


def searchable(world: World, person: Person) -> set[str]:
    """The ids a search of ``person`` can find: their memories (their messages' too) and
    their documents' chunks."""
    listed = world.client.get(
        f"/v1/users/{person.user_id}/memories", params={"limit": 100}, headers=person.headers
    ).json()["memories"]
    base = f"/v1/users/{person.user_id}/documents"
    docs = world.client.get(base, params={"limit": 100}, headers=person.headers).json()
    chunks = {
        chunk["id"]
        for doc in docs["documents"]
        for chunk in world.client.get(f"{base}/{doc['id']}/chunks", headers=person.headers).json()[
            "chunks"
        ]
    }
    return {m["id"] for m in listed} | chunks


def search_as_bob(world: World, alice: Person, bob: Person, body: dict[str, Any]) -> set[str]:
    """The ids bob's search finds, all of his with k=100 and no threshold; none of alice's."""
    url = f"/v1/users/{bob.user_id}/search"
    request = Request("POST", url, {}, {**body, "k": 100, "threshold": -1})
    answer = world.send(request, bob.headers)
    assert answer.status_code == 200, answer.text
    assert_nothing_of(alice, request, answer)
    found = {hit["id"] for hit in answer.json()["results"]}
    assert found <= searchable(world, bob)
    return found


def test_listing_by_her_session_finds_nothing(world, alice, bob):
    request = Request(
        "GET", f"/v1/users/{bob.user_id}/memories", {"session_id": alice.session_id}, None
    )
    answer = world.send(request, bob.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["memories"] == []
    assert_nothing_of(alice, request, answer)
