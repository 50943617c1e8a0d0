"""External spaces end to end: vectors the clients send, through a real ``engram api``.

The module runs on a database and a Redis database of its own, made ready as an operator
would: ``engram migrate`` with ``ENGRAM_EXTERNAL_SPACES`` makes the spaces' tables. The API
declares ``langchain-6`` (6 dims, ``vector``, the memory space) and ``big-2500`` (2,500
dims, ``halfvec``). No worker runs: an item of an external space is ready as it is written.
Searches are checked against a brute-force ranking over the same vectors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from engram_client import AsyncEngram, Engram, InvalidRequestError, MemoryIn, MessageIn
from litestar.testing import TestClient
from support.api import ADMIN
from support.databases import fresh_database, servers_of_their_own
from support.processes import (
    REPO,
    Servers,
    answers,
    api_env,
    free_port,
    start_worker,
    stop_process,
)

from models.embedding.spaces import MINILM_384, external_space
from models.embedding.tables import create_missing_tables
from models.errors import ConfigError
from models.settings import ExternalSpace, Settings
from service.http.app import create_app

SMALL, BIG = "langchain-6", "big-2500"
DECLARED = f"{SMALL}:6,{BIG}:2500:halfvec"
SPACE_ENV = {"ENGRAM_EXTERNAL_SPACES": DECLARED, "ENGRAM_MEMORY_SPACE": SMALL}
WORDS = ["apple", "harbour", "violin", "glacier", "lantern", "meadow", "copper", "orchid"]


def engram_migrate(url: str, home: Any, spaces: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {"ENGRAM_HOME": str(home), "ENGRAM_DATABASE_URL": url, "ENGRAM_EXTERNAL_SPACES": spaces}
    return subprocess.run(
        [sys.executable, "-m", "service.ops.cli", "migrate"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def servers(servers: Servers) -> Iterator[Servers]:
    """A database of the module's own, its external tables made by ``engram migrate``."""
    with servers_of_their_own(servers, redis=11) as own:
        done = engram_migrate(own.database_url, own.home, DECLARED)
        assert done.returncode == 0, done.stderr
        yield own


@pytest.fixture(scope="module")
def api_url(servers: Servers) -> Iterator[str]:
    """``engram api`` with the external spaces, its output kept to say why it did not start."""
    port = free_port()
    env = {**os.environ, **api_env(servers), "ENGRAM_PORT": str(port), **SPACE_ENV}
    log = servers.home / f"api-external-{port}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.ops.cli", "api"],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not answers(f"{url}/healthz"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


@pytest.fixture
def user(http: httpx.Client) -> tuple[str, dict[str, str]]:
    """A fresh user and the headers of a key of its own."""
    user_id = f"user-{uuid.uuid4().hex[:12]}"
    answer = http.post("/v1/keys", json={"user_id": user_id}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return user_id, {"Authorization": f"Bearer {answer.json()['key']}"}


@pytest.fixture
def db(servers: Servers) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        yield conn


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def vectors(count: int, dims: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dims))


def write(
    http: httpx.Client, user: str, headers: dict[str, str], items: list[dict[str, Any]], **body: Any
) -> httpx.Response:
    return http.post(
        f"/v1/users/{user}/memories", json={"memories": items, **body}, headers=headers
    )


def store(
    http: httpx.Client, user: str, headers: dict[str, str], matrix: np.ndarray, **body: Any
) -> list[dict[str, Any]]:
    """One memory a row of ``matrix`` (content: a word, the space and the row's number),
    in one batch."""
    items = [
        {
            "content": f"{WORDS[i % len(WORDS)]} note {body.get('space', SMALL)} {i}",
            "vector": row.tolist(),
            "metadata": {"topic": WORDS[i % len(WORDS)], "n": i},
        }
        for i, row in enumerate(matrix)
    ]
    answer = write(http, user, headers, items, **body)
    assert answer.status_code == 202, answer.text
    return list(answer.json()["memories"])


def search(http: httpx.Client, user: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return http.post(f"/v1/users/{user}/search", json=body, headers=headers)


def brute_force(
    stored: np.ndarray, query: np.ndarray, k: int, *, half: bool = False
) -> list[tuple[int, float]]:
    """(row, cosine similarity) of the ``k`` nearest rows, computed as the column stores them:
    unit float32 vectors, and float16 ones for halfvec."""
    kind = np.float16 if half else np.float32
    rows = np.array([unit(r).astype(np.float32).astype(kind) for r in stored], dtype=np.float64)
    q = unit(query).astype(np.float32).astype(kind).astype(np.float64)
    similarity = rows @ q / (np.linalg.norm(rows, axis=1) * np.linalg.norm(q))
    best = np.argsort(-similarity)[:k]
    return [(int(i), float(similarity[i])) for i in best]


def user_rows(db: psycopg.Connection[Any], user: str, table: str) -> tuple[int, int, int]:
    """(memories, their embedding states, vectors in ``table``) of a user."""
    counts = [
        db.execute(f"SELECT count(*) FROM {name} WHERE user_id = %s", [user]).fetchone()
        for name in ("memories", "embed_state", table)
    ]
    return tuple(int(c[0]) for c in counts if c)  # type: ignore[return-value]


def error_of(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["message"])


def test_the_declared_spaces_are_listed(http, user):
    _, headers = user
    listed = {s["name"]: s for s in http.get("/v1/spaces", headers=headers).json()}
    assert set(listed) == {MINILM_384.name, SMALL, BIG}
    small, big = listed[SMALL], listed[BIG]
    assert (small["provider"], small["dims"], small["storage"]) == ("external", 6, "vector")
    assert (big["provider"], big["dims"], big["storage"]) == ("external", 2500, "halfvec")
    assert small["model"] == big["model"] == "external"
    assert small["max_input_tokens"] is None
    assert small["default_for"] == ["memory"] and listed[MINILM_384.name]["default_for"] == [
        "document"
    ]
    assert small["counts"] == {"pending": 0, "ready": 0, "failed": 0, "total": 0}


def test_an_external_table_has_everything_a_built_in_one_has(db):
    """Columns, key, indexes (HNSW with the same options), row security and its policy,
    grants and the counting triggers: those of vec_minilm_384, under the other name."""

    def shape(table: str, dims: str) -> dict[str, Any]:
        def rows(query: str) -> list[Any]:
            found = db.execute(query, {"t": table}).fetchall()
            return sorted(
                tuple(str(v).replace(table, "T").replace(dims, "D") for v in row) for row in found
            )

        return {
            "columns": rows(
                "SELECT attname, format_type(atttypid, NULL), attnotnull FROM pg_attribute "
                "WHERE attrelid = %(t)s::regclass AND attnum > 0 AND NOT attisdropped"
            ),
            "constraints": rows(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %(t)s::regclass"
            ),
            "indexes": rows("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s"),
            "security": rows(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                "WHERE oid = %(t)s::regclass"
            ),
            "policies": rows(
                "SELECT policyname, roles, cmd, qual, with_check FROM pg_policies "
                "WHERE tablename = %(t)s"
            ),
            "grants": rows(
                "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                "WHERE table_name = %(t)s"
            ),
            "triggers": rows(
                "SELECT tgname, regexp_replace(pg_get_triggerdef(oid), '''[^'']*''', 'S') "
                "FROM pg_trigger WHERE tgrelid = %(t)s::regclass AND NOT tgisinternal"
            ),
        }

    built_in = shape("vec_minilm_384", "384")
    assert shape("vec_langchain_6", "6") == built_in
    assert built_in["policies"] and len(built_in["triggers"]) == 3
    hnsw = db.execute(
        "SELECT reloptions FROM pg_class WHERE relname = 'vec_big_2500_hnsw'"
    ).fetchone()
    assert hnsw == (["ef_construction=128"],)
    column = db.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'vec_big_2500'::regclass AND attname = 'embedding'"
    ).fetchone()
    assert column == ("halfvec(2500)",)


def test_memories_with_vectors_are_ready_at_once_and_counted(http, user, db):
    user_id, headers = user
    matrix = vectors(5, 6, seed=1)
    stored = store(http, user_id, headers, matrix)
    assert {m["status"] for m in stored} == {"ready"} and {m["space"] for m in stored} == {SMALL}
    states = db.execute(
        "SELECT space, status FROM embed_state WHERE user_id = %s", [user_id]
    ).fetchall()
    assert states == [(SMALL, "ready")] * 5  # no job anywhere: nothing for a worker to do
    listed = {s["name"]: s for s in http.get("/v1/spaces", headers=headers).json()}
    assert listed[SMALL]["counts"] == {"pending": 0, "ready": 5, "failed": 0, "total": 5}
    counted = db.execute(
        "SELECT vectors FROM vector_counts WHERE user_id = %s AND space = %s", [user_id, SMALL]
    ).fetchone()
    assert counted == (5,)
    again = write(http, user_id, headers, [{"content": stored[0]["content"], "vector": [1] * 6}])
    assert again.json()["memories"][0]["duplicate"] is True  # stored once, its vector kept


def test_search_by_vector_is_exact(http, user):
    user_id, headers = user
    matrix = vectors(40, 6, seed=2)
    stored = store(http, user_id, headers, matrix)
    query = np.random.default_rng(3).normal(size=6)
    answer = search(http, user_id, headers, space=SMALL, vector=query.tolist(), k=10)
    assert answer.status_code == 200, answer.text
    hits = answer.json()["results"]
    expected = brute_force(matrix, query, 10)
    assert [h["id"] for h in hits] == [stored[i]["id"] for i, _ in expected]
    assert [h["similarity"] for h in hits] == pytest.approx([s for _, s in expected], abs=1e-5)
    # the memory space is the default: a search without a space searches it the same way
    unnamed = search(http, user_id, headers, vector=query.tolist(), k=10, types=["memory"])
    assert [h["id"] for h in unnamed.json()["results"]] == [h["id"] for h in hits]


def test_search_in_a_halfvec_space_is_exact(http, user):
    user_id, headers = user
    matrix = vectors(30, 2500, seed=4)
    stored = store(http, user_id, headers, matrix, space=BIG)
    assert {m["space"] for m in stored} == {BIG} and {m["status"] for m in stored} == {"ready"}
    query = matrix[7] + 0.5 * np.random.default_rng(5).normal(size=2500)
    hits = search(http, user_id, headers, space=BIG, vector=query.tolist(), k=5).json()["results"]
    expected = brute_force(matrix, query, 5, half=True)
    assert [h["id"] for h in hits] == [stored[i]["id"] for i, _ in expected]
    assert hits[0]["id"] == stored[7]["id"]
    assert [h["similarity"] for h in hits] == pytest.approx([s for _, s in expected], abs=1e-4)


def test_filters_and_threshold(http, user):
    user_id, headers = user
    matrix = vectors(32, 6, seed=6)
    stored = store(http, user_id, headers, matrix)
    query = np.random.default_rng(7).normal(size=6)
    filtered = search(
        http, user_id, headers, space=SMALL, vector=query.tolist(), k=3, filter={"topic": "violin"}
    ).json()["results"]
    rows = [i for i in range(32) if WORDS[i % len(WORDS)] == "violin"]
    expected = brute_force(matrix[rows], query, 3)
    assert [h["id"] for h in filtered] == [stored[rows[i]]["id"] for i, _ in expected]
    threshold = 0.5
    above = search(
        http, user_id, headers, space=SMALL, vector=query.tolist(), k=100, threshold=threshold
    ).json()["results"]
    expected = [(i, s) for i, s in brute_force(matrix, query, 32) if s >= threshold]
    assert [h["id"] for h in above] == [stored[i]["id"] for i, _ in expected]
    assert all(h["similarity"] >= threshold for h in above)
    # diversity re-ranks the nearest candidates: the nearest item still leads
    diverse = search(
        http, user_id, headers, space=SMALL, vector=query.tolist(), k=5, diversity=0.5
    ).json()["results"]
    assert (
        len(diverse) == 5 and diverse[0]["id"] == stored[brute_force(matrix, query, 1)[0][0]]["id"]
    )


def test_hybrid_search_takes_query_and_vector(http, user):
    user_id, headers = user
    matrix = vectors(24, 6, seed=8)
    query = np.random.default_rng(9).normal(size=6)
    farthest = int(np.argmin(unit(matrix) @ unit(query)))
    stored = store(http, user_id, headers, matrix)
    patched = http.patch(
        f"/v1/users/{user_id}/memories/{stored[farthest]['id']}",
        json={"content": "the zebra crossing", "vector": matrix[farthest].tolist()},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    body = {"space": SMALL, "vector": query.tolist(), "k": 5}
    by_vector = search(http, user_id, headers, **body).json()["results"]
    hybrid = search(http, user_id, headers, **body, query="zebra", mode="hybrid")
    assert hybrid.status_code == 200, hybrid.text
    found = [h["id"] for h in hybrid.json()["results"]]
    assert stored[farthest]["id"] in found  # the text side found it
    assert stored[farthest]["id"] not in [h["id"] for h in by_vector]
    assert set(found) & {h["id"] for h in by_vector}  # the vector side found the others


def test_a_user_finds_only_their_own(http, user, db):
    user_id, headers = user
    matrix = vectors(6, 6, seed=10)
    store(http, user_id, headers, matrix)
    other = f"user-{uuid.uuid4().hex[:12]}"
    key = http.post("/v1/keys", json={"user_id": other}, headers=ADMIN).json()["key"]
    theirs = {"Authorization": f"Bearer {key}"}
    query = matrix[0].tolist()
    assert search(http, other, theirs, space=SMALL, vector=query).json()["results"] == []
    assert search(http, user_id, theirs, space=SMALL, vector=query).status_code == 403
    mine = search(http, user_id, headers, space=SMALL, vector=query).json()["results"]
    assert len(mine) == 6


BAD_ITEMS = {
    "short": ({"content": "b", "vector": [0.1] * 5}, "memories[1]: vector must have 6 numbers"),
    "long": ({"content": "b", "vector": [0.1] * 7}, "memories[1]: vector must have 6 numbers"),
    "zero": ({"content": "b", "vector": [0.0] * 6}, "memories[1]: vector must not be all zeros"),
    "missing": ({"content": "b"}, "memories[1]: vector is required"),
}


@pytest.mark.parametrize("case", sorted(BAD_ITEMS))
def test_a_bad_vector_is_a_422_naming_the_item_and_nothing_is_written(http, user, db, case):
    user_id, headers = user
    item, message = BAD_ITEMS[case]
    good = {"content": "a", "vector": [0.5] * 6}
    answer = write(http, user_id, headers, [good, item])
    assert answer.status_code == 422, answer.text
    assert message in error_of(answer)
    assert user_rows(db, user_id, "vec_langchain_6") == (0, 0, 0)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_refused(http, user, db, number):
    """JSON has no NaN or infinity, and 1e400 is out of a double's range: the body does not
    decode, as everywhere in the API (models/validation.py refuses them past the decoder)."""
    user_id, headers = user
    body = f'{{"memories": [{{"content": "a", "vector": [{number}, 0, 0, 0, 0, 1]}}]}}'
    answer = http.post(
        f"/v1/users/{user_id}/memories",
        content=body.encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_json"
    assert user_rows(db, user_id, "vec_langchain_6") == (0, 0, 0)


def test_a_vector_for_a_space_the_server_embeds_in_is_a_422(http, user, db):
    user_id, headers = user
    item = {"content": "a", "vector": [0.1] * 384}
    answer = write(http, user_id, headers, [item], space=MINILM_384.name)
    assert answer.status_code == 422
    assert f"memories[0]: vector: space {MINILM_384.name} embeds its items itself" in error_of(
        answer
    )
    assert user_rows(db, user_id, "vec_minilm_384") == (0, 0, 0)


def test_a_search_in_an_external_space_needs_the_query_vector(http, user):
    user_id, headers = user
    store(http, user_id, headers, vectors(3, 6, seed=11))
    alone = search(http, user_id, headers, space=SMALL, query="apple")
    assert alone.status_code == 422 and "needs the query's vector" in error_of(alone)
    # without a space the search covers the memory space, external: the same
    unnamed = search(http, user_id, headers, query="apple")
    assert unnamed.status_code == 422 and f"space {SMALL} is external" in error_of(unnamed)
    both = search(http, user_id, headers, space=SMALL, query="apple", vector=[1] * 6)
    assert both.status_code == 422 and "for mode 'hybrid'" in error_of(both)
    wrong = search(http, user_id, headers, space=SMALL, vector=[1] * 5)
    assert wrong.status_code == 422 and "needs 6" in error_of(wrong)
    # a built-in space alone keeps its rule: exactly one of the two
    built_in = search(
        http, user_id, headers, space=MINILM_384.name, query="apple", vector=[1] * 384
    )
    assert built_in.status_code == 422 and "exactly one of query and vector" in error_of(built_in)
    # memories here, documents in minilm-384: the text is embedded there, the vector used here
    covering = search(http, user_id, headers, query="apple", vector=[1, 0, 0, 0, 0, 0])
    assert covering.status_code == 200, covering.text
    assert covering.json()["spaces"] == [SMALL, MINILM_384.name]
    # the vector alone fits one space only: the documents' space needs 384 numbers
    alone = search(http, user_id, headers, vector=[1, 0, 0, 0, 0, 0])
    assert alone.status_code == 422 and f"space {MINILM_384.name} needs 384" in error_of(alone)


def test_a_search_without_a_space_names_the_spaces_it_could_not_reach(http, user):
    """Memories in the memory space and, by name, in big-2500: a search that names no space
    with a 6-number vector covers the memory space and names big-2500, which such a vector
    cannot search, as unsearched; the items of the space searched are all found."""
    user_id, headers = user
    small = store(http, user_id, headers, vectors(4, 6, seed=21))
    query = {"vector": [1, 0, 0, 0, 0, 0], "types": ["memory"]}
    before = search(http, user_id, headers, **query).json()
    assert before["spaces"] == [SMALL] and before["unsearched"] == []
    store(http, user_id, headers, vectors(3, 2500, seed=22), space=BIG)
    answer = search(http, user_id, headers, **query)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["spaces"] == [SMALL] and found["unsearched"] == [BIG]
    assert {h["id"] for h in found["results"]} == {m["id"] for m in small}
    # with text too, minilm-384 (the documents) is searched beside it; big-2500 still not
    both = search(http, user_id, headers, query="apple", vector=[1, 0, 0, 0, 0, 0]).json()
    assert both["spaces"] == [SMALL, MINILM_384.name] and both["unsearched"] == [BIG]


def test_documents_and_fills_in_an_external_space_are_422s(http, user, db):
    user_id, headers = user
    doc = {"documents": [{"content": "A manual."}], "space": SMALL}
    answer = http.post(f"/v1/users/{user_id}/documents", json=doc, headers=headers)
    assert answer.status_code == 422
    assert "store your own chunks as memories" in error_of(answer)
    assert db.execute(
        "SELECT count(*) FROM documents WHERE user_id = %s", [user_id]
    ).fetchone() == (0,)
    fill = http.post(f"/v1/spaces/{SMALL}/backfill", headers=ADMIN)
    assert fill.status_code == 422 and "cannot embed" in error_of(fill)
    assert db.execute("SELECT count(*) FROM space_fills").fetchone() == (0,)


def test_an_external_space_is_not_dropped(http, user, db):
    user_id, headers = user
    store(http, user_id, headers, vectors(2, 2500, seed=18), space=BIG)
    dropped = http.delete(f"/v1/spaces/{BIG}", headers=ADMIN)
    assert dropped.status_code == 409 and "could not be made again" in error_of(dropped)
    assert user_rows(db, user_id, "vec_big_2500") == (2, 2, 2)


def test_patching_content_needs_a_new_vector(http, user, db):
    user_id, headers = user
    (memory,) = store(http, user_id, headers, vectors(1, 6, seed=12))
    url = f"/v1/users/{user_id}/memories/{memory['id']}"

    def stored_vector() -> tuple[Any, ...] | None:
        return db.execute(
            "SELECT embedding::text, content_hash FROM vec_langchain_6 WHERE item_id = %s",
            [memory["id"]],
        ).fetchone()

    before = stored_vector()
    refused = http.patch(url, json={"content": "new words"}, headers=headers)
    assert refused.status_code == 422 and "new content needs its new vector" in error_of(refused)
    alone = http.patch(url, json={"vector": [1] * 6}, headers=headers)
    assert alone.status_code == 422
    assert http.get(url, headers=headers).json()["content"] == memory["content"]
    kept = http.patch(url, json={"metadata": {"topic": "kept"}}, headers=headers)
    assert kept.status_code == 200 and kept.json()["status"] == "ready"
    assert stored_vector() == before
    changed = http.patch(
        url, json={"content": "new words", "vector": [0, 0, 3, 0, 0, 4]}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "ready" and changed.json()["content"] == "new words"
    after = stored_vector()
    assert after is not None and after[0] == "[0,0,0.6,0,0,0.8]" and after[1] != before[1]
    hit = search(http, user_id, headers, space=SMALL, vector=[0, 0, 3, 0, 0, 4], k=1)
    assert hit.json()["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-6)


def test_messages_and_context_take_vectors(http, user, db):
    user_id, headers = user
    session = http.post(f"/v1/users/{user_id}/sessions", json={}, headers=headers).json()["id"]
    url = f"/v1/users/{user_id}/sessions/{session}/messages"
    refused = http.post(
        url, json={"messages": [{"role": "user", "content": "hi"}]}, headers=headers
    )
    assert refused.status_code == 422 and "messages[0]: vector is required" in error_of(refused)
    said = [
        {"role": "user", "content": "I keep bees on the roof.", "vector": [1, 0, 0, 0, 0, 0]},
        {"role": "assistant", "content": "How many hives?", "vector": [0, 1, 0, 0, 0, 0]},
    ]
    added = http.post(url, json={"messages": said}, headers=headers)
    assert added.status_code == 201, added.text
    memories = http.get(f"/v1/users/{user_id}/memories", headers=headers).json()["memories"]
    assert {m["status"] for m in memories} == {"ready"} and len(memories) == 2
    context_url = f"/v1/users/{user_id}/context"
    needs = http.post(context_url, json={"query": "bees"}, headers=headers)
    assert needs.status_code == 422 and "needs the query's vector" in error_of(needs)
    context = http.post(
        context_url,
        json={"query": "bees", "vector": [1, 0.1, 0, 0, 0, 0], "mode": "vector"},
        headers=headers,
    )
    assert context.status_code == 200, context.text
    assert "bees on the roof" in context.json()["text"]


def test_export_then_import_keeps_the_vectors_bit_for_bit(http, user, db):
    user_id, headers = user
    store(http, user_id, headers, vectors(4, 6, seed=13))
    store(http, user_id, headers, vectors(3, 2500, seed=14), space=BIG)
    export = http.get(f"/v1/users/{user_id}/export", headers=headers)
    assert export.status_code == 200
    other = f"user-{uuid.uuid4().hex[:12]}"
    imported = http.post(
        f"/v1/users/{other}/import",
        content=export.content,
        headers={**ADMIN, "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    answer = imported.json()
    assert answer["imported"]["vector"] == 7 and answer["queued"] == 0
    assert answer["without_vector"] == []
    for table in ("vec_langchain_6", "vec_big_2500"):
        rows = {
            user: db.execute(
                f"SELECT item_id, embedding::text, content_hash FROM {table} WHERE user_id = %s "
                "ORDER BY item_id",
                [user],
            ).fetchall()
            for user in (user_id, other)
        }
        assert rows[user_id] and rows[other] == rows[user_id]
    states = db.execute(
        "SELECT DISTINCT space, status FROM embed_state WHERE user_id = %s", [other]
    ).fetchall()
    assert sorted(states) == [(BIG, "ready"), (SMALL, "ready")]


def test_an_imported_item_without_its_vector_is_reported_not_queued(http, user, db):
    user_id, headers = user
    (memory,) = store(http, user_id, headers, vectors(1, 6, seed=15))
    export = http.get(f"/v1/users/{user_id}/export", headers=headers).text
    lines = [line for line in export.splitlines() if '"type":"vector"' not in line]
    lines[-1] = lines[-1].replace('"vector":1', '"vector":0')  # the end line's count
    other = f"user-{uuid.uuid4().hex[:12]}"
    imported = http.post(
        f"/v1/users/{other}/import",
        content="\n".join(lines) + "\n",
        headers={**ADMIN, "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["without_vector"] == [memory["id"]]
    assert imported.json()["queued"] == 0
    state = db.execute(
        "SELECT status, last_error FROM embed_state WHERE user_id = %s", [other]
    ).fetchone()
    assert state is not None and state[0] == "failed" and "external" in state[1]
    retried = http.post(f"/v1/jobs/{memory['id']}/retry", headers=ADMIN)
    assert retried.status_code == 404  # no worker can embed it: not sent back


def test_the_client_sends_vectors(api_url, user):
    user_id, headers = user
    key = headers["Authorization"].removeprefix("Bearer ")
    matrix = vectors(5, 6, seed=16)
    with Engram(api_url, api_key=key) as engram:
        added = engram.add_memories(
            user_id,
            [
                MemoryIn(content=f"client note {i}", vector=row.tolist())
                for i, row in enumerate(matrix)
            ],
        )
        assert {m.status for m in added} == {"ready"}
        query = matrix[2] + 0.01
        found = engram.search(user_id, vector=query.tolist(), space=SMALL, k=2)
        assert found.results[0].id == added[2].id
        hybrid = engram.search(
            user_id, query="note", vector=query.tolist(), space=SMALL, mode="hybrid", k=3
        )
        assert hybrid.results and hybrid.spaces == [SMALL]
        with pytest.raises(InvalidRequestError, match="needs the query's vector"):
            engram.search(user_id, "note", space=SMALL)
        changed = engram.update_memory(
            user_id, added[0].id, content="client note changed", vector=[0, 0, 0, 0, 0, 1]
        )
        assert changed.status == "ready"
        session = engram.create_session(user_id)
        engram.add_messages(
            user_id, session.id, [MessageIn(role="user", content="hello", vector=[1] * 6)]
        )
        context = engram.context(user_id, "hello", vector=[1] * 6, session_id=session.id)
        assert "hello" in context.text


async def test_the_async_client_sends_vectors(api_url, user):
    user_id, headers = user
    key = headers["Authorization"].removeprefix("Bearer ")
    async with AsyncEngram(api_url, api_key=key) as engram:
        added = await engram.add_memories(
            user_id, [MemoryIn(content="async note", vector=[1, 2, 3, 4, 5, 6])]
        )
        assert added[0].status == "ready"
        found = await engram.search(user_id, vector=[1, 2, 3, 4, 5, 6], space=SMALL)
        assert found.results[0].id == added[0].id


def test_a_table_of_other_dims_stops_the_start(servers, embedder):
    """The table is there with 7 dims: ``engram migrate`` and the API both refuse to start,
    naming the space, both lengths and the column."""
    with fresh_database(servers) as database:
        wrong = external_space(ExternalSpace(name=SMALL, dims=7))
        assert create_missing_tables(database.owner_url, [wrong]) == ["vec_langchain_6"]
        migrate = engram_migrate(database.owner_url, servers.home, DECLARED)
        assert migrate.returncode != 0
        expected = (
            f"space {SMALL}: dimension mismatch: configured 6, "
            "the database column vec_langchain_6.embedding has 7 dimensions"
        )
        assert expected in migrate.stderr
        env = api_env(servers) | SPACE_ENV | {"ENGRAM_DATABASE_URL": database.app_url}
        app = create_app(Settings.from_env(env), embedders={MINILM_384.name: embedder})
        with pytest.raises(BaseException) as refused, TestClient(app):
            pass
        assert expected in str(_config_error(refused.value))
        # nothing of the other space was made either: one transaction
        with psycopg.connect(database.owner_url) as conn:
            made = conn.execute("SELECT to_regclass('vec_big_2500')").fetchone()
        assert made == (None,)


def test_a_missing_table_stops_the_start(servers, embedder):
    """Without ``engram migrate`` the API finds no table and says so."""
    with fresh_database(servers) as database:
        env = api_env(servers) | SPACE_ENV | {"ENGRAM_DATABASE_URL": database.app_url}
        app = create_app(Settings.from_env(env), embedders={MINILM_384.name: embedder})
        with pytest.raises(BaseException) as refused, TestClient(app):
            pass
        assert "the database column vec_langchain_6.embedding has missing" in str(
            _config_error(refused.value)
        )


def _config_error(error: BaseException) -> ConfigError | None:
    if isinstance(error, ConfigError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _config_error(inner)) is not None:
                return found
    return None


def call_tool(
    http: httpx.Client, headers: dict[str, str], name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """One MCP tool call posted to ``/mcp``: its result."""
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    answer = http.post(
        "/mcp", json=message, headers={"Accept": "application/json, text/event-stream", **headers}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["result"]
    return result


def test_mcp_tools_on_an_external_memory_space_are_clear_tool_errors(http, user, db):
    """The tools take no vectors: remembering, recalling or asking for context in an
    external memory space is a tool error that says why, and writes nothing."""
    user_id, headers = user
    calls = {
        "remember": ({"content": "I like tea"}, "vector is required"),
        "recall": ({"query": "tea"}, "needs the query's vector"),
        "get_context": ({"query": "tea"}, "needs the query's vector"),
    }
    for tool, (arguments, reason) in calls.items():
        result = call_tool(http, headers, tool, arguments)
        assert result["isError"] is True, (tool, result)
        assert reason in result["content"][0]["text"], (tool, result)
    assert user_rows(db, user_id, "vec_langchain_6") == (0, 0, 0)


def test_a_worker_starts_with_external_spaces_and_never_claims_their_items(servers, http, user, db):
    """The worker checks the external tables' dims without a provider to probe, and finds
    no work in an external space: its items never become jobs."""
    user_id, headers = user
    worker = start_worker(servers, **SPACE_ENV)
    try:
        stored = store(http, user_id, headers, vectors(4, 6, seed=17))
        time.sleep(3)  # several of the worker's sweeps
        states = db.execute(
            "SELECT status, attempts FROM embed_state WHERE user_id = %s", [user_id]
        ).fetchall()
        assert states == [("ready", 0)] * len(stored)
    finally:
        stop_process(worker)


@pytest.mark.slow
def test_engram_run_makes_the_tables_and_serves_the_spaces(tmp_path):
    """``engram run`` on a new home: its embedded database gets the external tables as it
    is migrated, and the space takes vectors at once."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {"ENGRAM_HOME": str(tmp_path), "ENGRAM_PORT": str(port), **SPACE_ENV}
    log = tmp_path / "run.log"
    with open(log, "wb") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", "service.ops.cli", "run"],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while "Engram is running at" not in log.read_text(errors="replace"):
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.key').read_text().strip()}"}
        url = f"http://127.0.0.1:{port}"
        spaces = {s["name"]: s for s in httpx.get(f"{url}/v1/spaces", headers=admin).json()}
        assert spaces[BIG]["storage"] == "halfvec" and spaces[SMALL]["provider"] == "external"
        body = {"memories": [{"content": "Run note.", "vector": [1, 2, 3, 4, 5, 6]}]}
        added = httpx.post(f"{url}/v1/users/ann/memories", json=body, headers=admin)
        assert added.status_code == 202 and added.json()["memories"][0]["status"] == "ready"
        query = {"vector": [1, 2, 3, 4, 5, 6], "space": SMALL}
        found = httpx.post(f"{url}/v1/users/ann/search", json=query, headers=admin)
        assert found.json()["results"][0]["content"] == "Run note."
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=90)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
