"""Tiered vector storage: vectors are written unindexed, the worker's indexer puts large
users' vectors into the HNSW index, and every search stays complete and exact meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from support.api import ADMIN, add_memories
from support.databases import servers_of_their_own
from support.processes import Servers, start_api, start_worker, stop_process, wait_until
from support.searching import index_vectors, search_directly

from models.embedding.spaces import MINILM_384
from models.search import planner, statements
from models.search.hints import SizeHints
from models.search.query import SearchQuery

pytestmark = pytest.mark.usefixtures("worker")

TOPICS = ["tea", "rain", "jazz", "chess"]
LIMIT = 30  # the exact-search limit of this module's own API and worker


def sizes(db: psycopg.Connection[Any], user: str) -> tuple[int, int]:
    """The user's memory vectors and how many of them are unindexed, as stored."""
    row = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE NOT indexed) FROM vec_minilm_384 "
        "WHERE user_id = %s AND kind = 'memory'",
        [user],
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_user_indexed_batch_by_batch_is_answered_exactly_throughout(
    client, new_user, servers, embedder, db, monkeypatch
):
    """While a user's vectors move into the index, each search takes the path the counts
    say (exact while the index holds too few of them or too many wait, then the index and
    the unindexed rest together) and answers as an exact search does, every time."""
    monkeypatch.setattr(statements, "UNINDEXED_MAX", 40)
    monkeypatch.setattr(planner, "UNINDEXED_MAX", 40)
    user, headers = new_user()
    notes = [f"note {i} about {topic}" for i, topic in enumerate(TOPICS * 25)]
    add_memories(client, user, headers, notes)
    assert sizes(db, user) == (100, 100)
    query = SearchQuery(vector=embedder.encode(["jazz records"])[0], k=10)
    exact = [hit.id for hit in search_directly(servers, user, query, exact_max_rows=10**6)]
    assert len(exact) == 10

    hints, paths = SizeHints(), []
    while True:
        found = search_directly(servers, user, query, exact_max_rows=20, hints=hints)
        assert [hit.id for hit in found] == exact
        paths.append(hints.path(MINILM_384.name, user, "memory"))
        if not index_vectors(servers, user, batch=10, batches=1):
            break
    # indexed 0..50: too few indexed or too many waiting; 60..100: the index and the rest
    assert paths == ["exact"] * 6 + ["approximate"] * 5
    assert sizes(db, user) == (100, 0)


@pytest.fixture(scope="module")
def stack(servers: Servers) -> Iterator[tuple[Servers, str]]:
    """An API and a worker of their own whose exact-search limit is ``LIMIT`` vectors, on a
    database of their own (this worker indexes every user above it)."""
    limits = {"ENGRAM_EXACT_SEARCH_MAX_ROWS": str(LIMIT)}
    with servers_of_their_own(servers, redis=15) as own:
        worker = start_worker(own, ENGRAM_INDEX_INTERVAL_SECONDS="0.2", **limits)
        try:
            api, url = start_api(own, **limits)
            try:
                yield own, url
            finally:
                stop_process(api)
        finally:
            stop_process(worker)


@pytest.fixture
def http(stack: tuple[Servers, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack[1], timeout=60) as client:
        yield client


@pytest.fixture
def own_db(stack: tuple[Servers, str]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(stack[0].database_url, autocommit=True) as conn:
        register_vector(conn)
        yield conn


def user_of(http: httpx.Client) -> tuple[str, dict[str, str]]:
    user = f"tiers-{uuid.uuid4().hex[:10]}"
    answer = http.post("/v1/keys", json={"user_id": user}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return user, {"Authorization": f"Bearer {answer.json()['key']}"}


def write(http: httpx.Client, user: str, headers: dict[str, str], contents: list[str]) -> list:
    body = {"memories": [{"content": c} for c in contents], "wait": True}
    answer = http.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["memories"]


def nearest(db: psycopg.Connection[Any], user: str, query: np.ndarray, k: int) -> list[str]:
    """The user's ``k`` nearest memories by brute force over what is stored."""
    rows = db.execute(
        "SELECT item_id, embedding FROM vec_minilm_384 WHERE user_id = %s AND kind = 'memory'",
        [user],
    ).fetchall()
    vectors = np.array([row[1].to_numpy() for row in rows])
    order = np.argsort(-(vectors @ query), kind="stable")
    return [str(rows[i][0]) for i in order[:k]]


def test_the_worker_indexes_large_users_and_leaves_small_ones_unindexed(http, own_db, embedder):
    """Past the exact-search limit, the worker's indexer puts a user's vectors into the
    index on its own, and again after one is replaced; a smaller user's stay unindexed.
    Searches through the API answer as brute force does."""
    small, small_headers = user_of(http)
    write(http, small, small_headers, [f"small note {i} about tea" for i in range(LIMIT // 2)])
    large, headers = user_of(http)
    stored = write(http, large, headers, [f"note {i} about {t}" for i, t in enumerate(TOPICS * 20)])
    wait_until(lambda: sizes(own_db, large) == (80, 0), what="the large user indexed")
    assert sizes(own_db, small) == (LIMIT // 2, LIMIT // 2)

    query = embedder.encode(["jazz records"])[0]
    body = {"query": "jazz records", "k": 10}
    answer = http.post(f"/v1/users/{large}/search", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert [hit["id"] for hit in answer.json()["results"]] == nearest(own_db, large, query, 10)

    changed = http.patch(
        f"/v1/users/{large}/memories/{stored[0]['id']}",
        json={"content": "a record of Coltrane's jazz", "wait": True},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    wait_until(lambda: sizes(own_db, large) == (80, 0), what="the new vector indexed")
    answer = http.post(f"/v1/users/{large}/search", json=body, headers=headers)
    found = [hit["id"] for hit in answer.json()["results"]]
    assert found == nearest(own_db, large, query, 10)
    assert found[0] == stored[0]["id"]


def test_every_vector_table_indexes_only_indexed_vectors(db):
    """The HNSW index of every space's table is partial, and the unindexed vectors have an
    index of their own, by user and type."""
    tables = ["vec_minilm_384", "vec_openai_1536"]
    rows = db.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)", [tables]
    ).fetchall()
    definitions = dict(rows)
    for table in tables:
        assert definitions[f"{table}_hnsw"].endswith("WHERE indexed"), definitions
        assert definitions[f"{table}_unindexed"].endswith("(user_id, kind) WHERE (NOT indexed)"), (
            definitions
        )
