"""Embedding spaces end to end: the 1536 space over a local OpenAI-compatible server, its
faults, the start-up dimension check, and an online backfill while searches keep working.

The provider is ``tests/support/fake_openai.py``: it speaks the OpenAI embeddings protocol and
returns the local model's vectors through a fixed random projection to 1536 dimensions, so
search results keep their meaning. A real worker process embeds through it over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from support.api import ADMIN, add_memories, search
from support.databases import servers_of_their_own
from support.fake_openai import FakeOpenAI
from support.processes import Servers, api_env, start_worker, stop_process, wait_until

from models.embedding.spaces import MINILM_384, OPENAI_1536
from models.errors import ConfigError
from models.settings import Settings
from service.http.app import create_app

OPENAI_KEY = "sk-test-" + uuid.uuid4().hex
# small numbers so every fault class shows within seconds
PROVIDER_ENV = {
    "ENGRAM_OPENAI_API_KEY": OPENAI_KEY,
    "ENGRAM_OPENAI_TIMEOUT_SECONDS": "1",
    "ENGRAM_OPENAI_MAX_RETRIES": "2",
    "ENGRAM_OPENAI_BACKOFF_SECONDS": "0.05",
    # minilm-384 stays the documents' default, so openai-1536 can be dropped in the tests
    "ENGRAM_DOCUMENT_SPACE": MINILM_384.name,
}
FACTS = [
    "Alice drinks her coffee black, every morning at seven.",
    "The quarterly report is due on the first Friday of March.",
    "Bob's dog is a three-legged greyhound called Lightning.",
    "The office wifi password changed to heron-42 last week.",
    "Carol is allergic to peanuts and shellfish.",
]
QUESTIONS = {
    "what does alice drink?": 0,
    "when is the report due?": 1,
    "tell me about the dog": 2,
    "what is the wifi password?": 3,
    "what is carol allergic to?": 4,
}


@pytest.fixture(scope="module")
def servers(servers: Servers) -> Iterator[Servers]:
    """A database and a Redis database of the module's own: a backfill embeds every item in
    the database, so its time must not grow with what the rest of the suite has stored."""
    with servers_of_their_own(servers, redis=4) as own:
        yield own


@pytest.fixture(scope="module")
def client(servers: Servers, embedder: Any) -> Iterator[TestClient[Any]]:
    """The API with only the default space, on the module's database."""
    app = create_app(Settings.from_env(api_env(servers)), embedders={MINILM_384.name: embedder})
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def fake(embedder: Any) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(embedder.encode, api_key=OPENAI_KEY) as server:
        yield server


def provider_env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {"ENGRAM_OPENAI_BASE_URL": fake.url, **PROVIDER_ENV, **extra}


def api(servers: Servers, fake: FakeOpenAI, embedder: Any, **extra: str) -> TestClient[Any]:
    """An API with the openai-1536 space enabled over the fake server (enter it to start)."""
    settings = Settings.from_env({**api_env(servers), **provider_env(fake, **extra)})
    return TestClient(create_app(settings, embedders={MINILM_384.name: embedder}))


@pytest.fixture(scope="module")
def stack(servers: Servers, fake: FakeOpenAI, embedder: Any) -> Iterator[TestClient[Any]]:
    """An API and a worker with both spaces; openai-1536 is dropped again at the end."""
    worker = start_worker(servers, **provider_env(fake))
    try:
        with api(servers, fake, embedder) as client:
            yield client
            fake.clear()
            client.delete(f"/v1/spaces/{OPENAI_1536}", headers=ADMIN)
    finally:
        stop_process(worker)


def new_user(client: TestClient[Any]) -> tuple[str, dict[str, str]]:
    user = f"spaces-{uuid.uuid4().hex[:10]}"
    answer = client.post("/v1/keys", json={"user_id": user}, headers=ADMIN)
    return user, {"Authorization": f"Bearer {answer.json()['key']}"}


def space(client: TestClient[Any], name: str, headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    answer = client.get(f"/v1/spaces/{name}", headers=headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def state(db: psycopg.Connection[Any], user: str, item: str) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT e.status, e.last_error, count(v.item_id) FROM embed_state e "
        "LEFT JOIN vec_openai_1536 v ON v.user_id = e.user_id AND v.item_id = e.item_id "
        "WHERE e.user_id = %s AND e.item_id = %s AND e.space = %s GROUP BY 1, 2",
        [user, item, OPENAI_1536],
    ).fetchone()


def test_spaces_are_listed_with_their_defaults_and_counts(stack):
    user, headers = new_user(stack)
    add_memories(stack, user, headers, FACTS[:2])
    listed = {s["name"]: s for s in stack.get("/v1/spaces", headers=headers).json()}
    assert listed[MINILM_384.name]["dims"] == 384
    assert listed[MINILM_384.name]["default_for"] == ["memory", "document"]
    assert listed[MINILM_384.name]["counts"]["ready"] == 2  # a user key counts its own items
    openai = listed[OPENAI_1536]
    assert (openai["dims"], openai["provider"], openai["storage"]) == (1536, "openai", "halfvec")
    assert openai["model"] == "text-embedding-3-small" and openai["default_for"] == []
    assert OPENAI_KEY not in stack.get("/v1/spaces", headers=ADMIN).text


def test_memories_written_to_the_1536_space_are_searchable_there(stack, servers, fake, embedder):
    with api(servers, fake, embedder, ENGRAM_MEMORY_SPACE=OPENAI_1536) as client:
        user, headers = new_user(client)
        stored = add_memories(client, user, headers, FACTS)
        assert {m["space"] for m in stored} == {OPENAI_1536}
        for question, fact in QUESTIONS.items():
            found = search(client, user, headers, query=question, k=3)
            assert found[0]["id"] == stored[fact]["id"], question
        vector = fake.vectors(["what does alice drink?"])[0].tolist()
        by_vector = search(client, user, headers, vector=vector, k=1, space=OPENAI_1536)
        assert by_vector[0]["id"] == stored[0]["id"]
        wrong = {"vector": [0.1] * 384, "space": OPENAI_1536}
        assert (
            client.post(f"/v1/users/{user}/search", json=wrong, headers=headers).status_code == 422
        )
        # the minilm-384 space never heard of them
        assert search(client, user, headers, query="coffee", space=MINILM_384.name) == []


def test_documents_go_to_the_1536_space_when_it_is_enabled(servers, fake, embedder, stack):
    with api(servers, fake, embedder, ENGRAM_DOCUMENT_SPACE="") as client:
        user, headers = new_user(client)
        body = {"documents": [{"content": fact} for fact in FACTS]}
        answer = client.post(f"/v1/users/{user}/documents", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        docs = answer.json()["documents"]
        assert {d["space"] for d in docs} == {OPENAI_1536}
        url = f"/v1/users/{user}/batches/{answer.json()['batch_id']}"
        wait_until(lambda: client.get(url, headers=headers).json()["status"] == "completed")
        for question, fact in QUESTIONS.items():
            found = search(client, user, headers, query=question, k=1, space=OPENAI_1536)
            assert found[0]["document_id"] == docs[fact]["id"], question


def test_a_search_without_a_space_covers_memories_and_documents_where_they_live(
    servers, fake, embedder, stack
):
    """Memories in minilm-384, documents in openai-1536: a search that names no space
    searches each type where it lives and fuses the two rankings; with k of each, k."""
    with api(servers, fake, embedder, ENGRAM_DOCUMENT_SPACE="") as client:
        user, headers = new_user(client)
        memories = add_memories(client, user, headers, FACTS[:3])
        body = {"documents": [{"content": fact} for fact in FACTS[3:]], "wait": True}
        answer = client.post(f"/v1/users/{user}/documents", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        docs = answer.json()["documents"]
        answer = client.post(f"/v1/users/{user}/search", json={"query": "wifi password"},
                             headers=headers)  # fmt: skip
        found = answer.json()
        assert (
            found["spaces"] == [MINILM_384.name, OPENAI_1536] and found["space"] == MINILM_384.name
        )
        kinds = {hit["type"] for hit in found["results"]}
        assert kinds == {"memory", "chunk"} and len(found["results"]) == 5
        assert found["results"][0]["document_id"] == docs[0]["id"]  # the wifi password
        for question, fact in list(QUESTIONS.items())[:3]:  # the memories' own rankings
            best = search(client, user, headers, query=question, k=1, types=["memory"])
            assert best[0]["id"] == memories[fact]["id"]
        assert len(search(client, user, headers, query="anything", k=2)) == 2
        chunks = search(client, user, headers, query="carol allergy", types=["chunk"])
        assert {h["type"] for h in chunks} == {"chunk"} and len(chunks) == 2
        named = search(client, user, headers, query="carol allergy", space=MINILM_384.name)
        assert {h["type"] for h in named} == {"memory"}  # the documents are not there
        vector = {"vector": [0.1] * 384}
        answer = client.post(f"/v1/users/{user}/search", json=vector, headers=headers)
        assert answer.status_code == 422 and OPENAI_1536 in answer.text


def test_a_request_may_name_its_space(stack):
    user, headers = new_user(stack)
    body = {"memories": [{"content": c} for c in FACTS[:2]], "space": OPENAI_1536, "wait": True}
    answer = stack.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    stored = answer.json()["memories"]
    assert answer.status_code == 200 and {m["space"] for m in stored} == {OPENAI_1536}
    found = search(stack, user, headers, query="what does alice drink?", space=OPENAI_1536)
    assert found[0]["id"] == stored[0]["id"]
    unknown = {"memories": [{"content": "x"}], "space": "nope-7"}
    answer = stack.post(f"/v1/users/{user}/memories", json=unknown, headers=headers)
    assert answer.status_code == 422 and "unknown space" in answer.text
    for method in ("GET", "DELETE"):  # a space in the path is a resource: 404
        answer = stack.request(method, "/v1/spaces/nope-7", headers=ADMIN)
        assert answer.status_code == 404 and "no space 'nope-7'" in answer.text
    assert stack.post("/v1/spaces/nope-7/backfill", headers=ADMIN).status_code == 404


def test_a_search_without_a_space_covers_every_space_that_holds_the_users_items(stack, fake):
    """Memories in minilm-384 (the memory space) and, by name, in openai-1536: a search that
    names no space covers both and fuses their rankings. A user whose items are all in one
    space gets that space alone. When the query cannot be embedded in the other space, the
    search answers from the first one and names the other as unsearched."""
    user, headers = new_user(stack)
    here = add_memories(stack, user, headers, FACTS[:3])
    body = {"memories": [{"content": c} for c in FACTS[3:]], "space": OPENAI_1536, "wait": True}
    answer = stack.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    there = answer.json()["memories"]
    found = stack.post(
        f"/v1/users/{user}/search", json={"query": "what is the wifi password?"}, headers=headers
    ).json()
    assert found["spaces"] == [MINILM_384.name, OPENAI_1536] and found["unsearched"] == []
    assert len(found["results"]) == 5 and found["results"][0]["id"] == there[0]["id"]
    assert {h["id"] for h in found["results"]} == {m["id"] for m in here + there}
    assert len(search(stack, user, headers, query="what does alice drink?", k=4)) == 4
    best = search(stack, user, headers, query="what is carol allergic to?", k=1)
    assert best[0]["id"] == there[1]["id"]

    alone, alone_headers = new_user(stack)
    add_memories(stack, alone, alone_headers, FACTS[:2])
    answer = stack.post(
        f"/v1/users/{alone}/search", json={"query": "coffee"}, headers=alone_headers
    )
    assert answer.json()["spaces"] == [MINILM_384.name] and answer.json()["unsearched"] == []

    fake.always("500")
    try:
        answer = stack.post(
            f"/v1/users/{user}/search", json={"query": "who has a dog?"}, headers=headers
        )
    finally:
        fake.clear()
    assert answer.status_code == 200, answer.text
    down = answer.json()
    assert down["spaces"] == [MINILM_384.name] and down["unsearched"] == [OPENAI_1536]
    assert {h["id"] for h in down["results"]} == {m["id"] for m in here}


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("429", {"retry_after": 1, "times": 2}),
        ("500", {"times": 2}),
        ("503", {"times": 1}),
        ("slow", {"seconds": 2, "times": 2}),  # past the 1 s timeout: retried
        ("disconnect", {"times": 1}),
        ("500", {"times": 12}),  # past the provider's retries: the item backs off and retries
    ],
)
def test_transient_faults_lose_nothing(stack, servers, fake, embedder, db, fault, params):
    with api(servers, fake, embedder, ENGRAM_MEMORY_SPACE=OPENAI_1536) as client:
        user, headers = new_user(client)
        fake.reset_log()
        times = params.pop("times")
        fake.fail_next(fault, times=times, **params)
        body = {"memories": [{"content": c} for c in FACTS], "wait": True}
        answer = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        stored = answer.json()["memories"]
        assert [m["status"] for m in stored] == ["ready"] * len(FACTS), stored
        assert fake.request_count > times  # the faults were met, then got through
        assert all(state(db, user, m["id"])[2] == 1 for m in stored)
        found = search(client, user, headers, query="what does alice drink?", k=1)
        assert found[0]["id"] == stored[0]["id"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("401", "HTTP 401"),
        ("400", "HTTP 400"),
        ("wrong_length", "1535"),
    ],
)
def test_permanent_faults_fail_the_item_with_the_providers_message(
    stack, servers, fake, embedder, db, fault, expected
):
    with api(servers, fake, embedder, ENGRAM_MEMORY_SPACE=OPENAI_1536) as client:
        user, headers = new_user(client)
        fake.always(fault)
        try:
            body = {"memories": [{"content": FACTS[0]}], "wait": True}
            answer = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
        finally:
            fake.clear()
        memory = answer.json()["memories"][0]
        assert (answer.status_code, memory["status"]) == (200, "failed")
        assert expected in memory["error"] and OPENAI_KEY not in memory["error"]
        assert state(db, user, memory["id"])[2] == 0  # nothing reached the vector table
        # nothing is lost: once the provider is fixed, an admin retry embeds it
        assert client.post(f"/v1/jobs/{memory['id']}/retry", headers=ADMIN).status_code == 202
        url = f"/v1/users/{user}/memories/{memory['id']}"
        wait_until(lambda: client.get(url, headers=headers).json()["status"] == "ready")


def test_one_rejected_input_fails_alone(stack, servers, fake, embedder):
    with api(servers, fake, embedder, ENGRAM_MEMORY_SPACE=OPENAI_1536) as client:
        user, headers = new_user(client)
        contents = [*FACTS[:3], "this one is __too_long__ for the model"]
        body = {"memories": [{"content": c} for c in contents], "wait": True}
        stored = client.post(f"/v1/users/{user}/memories", json=body, headers=headers).json()
        statuses = [m["status"] for m in stored["memories"]]
        assert statuses == ["ready", "ready", "ready", "failed"]
        assert "maximum context length" in stored["memories"][3]["error"]


@pytest.mark.parametrize(
    ("env", "fault", "provider_dims"),
    [
        ({"ENGRAM_OPENAI_DIMENSIONS": "512"}, None, 512),  # a shortened model, a 1536 table
        ({}, "wrong_length", 1535),  # a provider that answers with another length
    ],
)
def test_start_up_refuses_a_dimension_mismatch(servers, fake, embedder, env, fault, provider_dims):
    if fault:
        fake.always(fault)
    try:
        with pytest.raises(BaseException) as refused, api(servers, fake, embedder, **env):
            pass
    finally:
        fake.clear()
    (error,) = _config_errors(refused.value)  # the lifespan's failure, maybe in a group
    message = str(error)
    assert "configured 1536" in message and f"returns {provider_dims}" in message
    assert "vec_openai_1536.embedding has 1536 dimensions" in message


def _config_errors(error: BaseException) -> list[ConfigError]:
    if isinstance(error, ConfigError):
        return [error]
    if isinstance(error, BaseExceptionGroup):
        return [found for e in error.exceptions for found in _config_errors(e)]
    return []


def test_a_worker_refuses_to_start_on_a_dimension_mismatch(servers, fake):
    with pytest.raises(RuntimeError) as refused:
        worker = start_worker(servers, **provider_env(fake, ENGRAM_OPENAI_DIMENSIONS="512"))
        stop_process(worker)
    assert "dimension mismatch" in str(refused.value) and "returns 512" in str(refused.value)


def test_backfill_fills_a_new_space_online(stack, client, new_user, db):
    """Items written before the 1536 space existed are embedded into it in the background,
    while searches keep being served from minilm-384; items written meanwhile land in both."""
    users = [new_user() for _ in range(3)]
    stored = {user: add_memories(client, user, headers, FACTS) for user, headers in users}
    doc_user, doc_headers = users[1]
    body = {"documents": [{"content": "The boiler manual says: bleed the radiators in autumn."}]}
    batch = client.post(f"/v1/users/{doc_user}/documents", json=body, headers=doc_headers).json()
    batch_url = f"/v1/users/{doc_user}/batches/{batch['batch_id']}"
    wait_until(lambda: client.get(batch_url, headers=doc_headers).json()["status"] == "completed")
    before = space(stack, OPENAI_1536)["counts"]

    started = stack.post(f"/v1/spaces/{OPENAI_1536}/backfill", headers=ADMIN)
    assert started.status_code == 202 and started.json()["fill"]["complete"] is False
    late_user, late_headers = users[0]
    late = add_memories(client, late_user, late_headers, ["Dave plays the cello on Sundays."])

    searches = 0

    def complete() -> bool:
        nonlocal searches
        for user, headers in users:  # the old space keeps answering, fully, meanwhile
            found = search(client, user, headers, query="what does alice drink?", k=3)
            assert found[0]["id"] == stored[user][0]["id"] and len(found) == 3
            searches += 1
        fill = space(stack, OPENAI_1536)["fill"]
        return bool(fill["complete"])

    wait_until(complete, timeout=180, what="the backfill to complete")
    assert searches >= len(users)
    after = space(stack, OPENAI_1536)["counts"]
    assert after["ready"] >= before["ready"] + 3 * len(FACTS) + 2
    for user, headers in users:
        for question, fact in QUESTIONS.items():
            found = search(stack, user, headers, query=question, k=1, space=OPENAI_1536)
            assert found[0]["id"] == stored[user][fact]["id"], question
    found = search(stack, late_user, late_headers, query="who plays the cello?", space=OPENAI_1536)
    assert found[0]["id"] == late[0]["id"]
    found = search(stack, doc_user, doc_headers, query="radiators", space=OPENAI_1536, k=1)
    assert found[0]["document_id"] == batch["documents"][0]["id"]
    assert (
        db.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'space.fill' AND target = %s",
            [OPENAI_1536],
        ).fetchone()[0]
        >= 1
    )


def test_dropping_a_space_drops_its_vectors_and_nothing_else(stack, client, new_user, db):
    user, headers = new_user()
    stored = add_memories(client, user, headers, FACTS[:2])
    assert stack.delete(f"/v1/spaces/{MINILM_384.name}", headers=ADMIN).status_code == 409
    assert stack.delete(f"/v1/spaces/{OPENAI_1536}", headers=headers).status_code == 403
    dropped = stack.delete(f"/v1/spaces/{OPENAI_1536}", headers=ADMIN)
    assert dropped.status_code == 200, dropped.text
    assert db.execute("SELECT count(*) FROM vec_openai_1536").fetchone() == (0,)
    assert db.execute(
        "SELECT count(*) FROM embed_state WHERE space = %s", [OPENAI_1536]
    ).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM space_fills").fetchone() == (0,)
    # the items and their other space are untouched
    found = search(client, user, headers, query="what does alice drink?", k=1)
    assert found[0]["id"] == stored[0]["id"]


def test_a_vector_stored_while_its_space_is_dropped_is_dropped_too(
    stack, client, new_user, db, servers
):
    """A worker's store that is still in flight when the drop starts (its job row locked,
    its vector written but not committed) cannot leave a vector behind."""
    user, headers = new_user()
    item = uuid.UUID(add_memories(client, user, headers, FACTS[:1])[0]["id"])
    db.execute(  # a job the running worker will not claim: its lease runs for an hour
        "INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, claimed_until) "
        "SELECT user_id, id, %s, 'memory', content_hash, now() + interval '1 hour' "
        "FROM memories WHERE user_id = %s AND id = %s",
        [OPENAI_1536, user, item],
    )
    with psycopg.connect(servers.database_url) as store:
        # what ``store_vectors`` does, left uncommitted
        store.execute(
            "UPDATE embed_state SET status = 'ready' "
            "WHERE user_id = %s AND item_id = %s AND space = %s",
            [user, item, OPENAI_1536],
        )
        store.execute(
            "INSERT INTO vec_openai_1536 (user_id, item_id, kind, content_hash, embedding) "
            "SELECT user_id, id, 'memory', content_hash, array_fill(0.03, ARRAY[1536])::halfvec "
            "FROM memories WHERE user_id = %s AND id = %s",
            [user, item],
        )
        with ThreadPoolExecutor(1) as pool:
            dropping = pool.submit(stack.delete, f"/v1/spaces/{OPENAI_1536}", headers=ADMIN)
            wait_until(  # the drop waits for the store's lock
                lambda: (
                    db.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM%'"
                    ).fetchone()[0]
                    > 0
                ),
                what="the drop to wait for the store",
            )
            store.commit()
            assert dropping.result(timeout=60).status_code == 200
    assert db.execute("SELECT count(*) FROM vec_openai_1536").fetchone() == (0,)
    assert db.execute(
        "SELECT count(*) FROM embed_state WHERE space = %s", [OPENAI_1536]
    ).fetchone() == (0,)
