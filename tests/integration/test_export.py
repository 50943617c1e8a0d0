"""A user moved whole (NDJSON export and import) and the whole database backed up and
restored (``engram backup`` / ``engram restore``), each into a fresh database on the same
server, compared with the original by search results and by the rows themselves.

The source has both spaces: memories in ``minilm-384`` (``vector``) and documents in
``openai-1536`` (``halfvec``, over ``tests/support/fake_openai.py``), embedded by a real worker.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg import sql
from support.api import ADMIN, add_memories, search
from support.databases import Database, fresh_database, redis_db, with_dbname
from support.fake_openai import FakeOpenAI
from support.processes import REPO, Servers, api_env, start_worker, stop_process, wait_until

from models.db import schema
from models.embedding.spaces import MINILM_384, OPENAI_1536
from models.settings import Settings
from service.http.app import create_app
from service.ops.embedded import EmbeddedPostgres

OPENAI_KEY = "sk-export-" + uuid.uuid4().hex
NDJSON = {"Content-Type": "application/x-ndjson"}
FACTS = [
    "Alice drinks her coffee black, every morning at seven.",
    "The quarterly report is due on the first Friday of March.",
    "Bob's dog is a three-legged greyhound called Lightning.",
    "The office wifi password changed to heron-42 last week.",
    "Carol is allergic to peanuts and shellfish.",
]
OLD_FACT = "The old house on Elm Street was sold in the autumn."
FRENCH_FACT = "Les chevaux d'Alice mangent des pommes."  # indexed in french, and kept so
MEMORY_QUERIES = [
    "what does alice drink?",
    "when is the report due?",
    "tell me about the dog",
    "what is the wifi password?",
    "what did I say about the trip?",
]
GUIDE = "# Espresso guide\n\n" + "\n\n".join(
    f"## Step {i}\nStep {i}: the milk steamer needs descaling every month, or the wand clogs; "
    f"grind {i + 10} grams of beans fine, about like table salt, for a {20 + i} second shot."
    for i in range(30)
)
DOCUMENTS = [
    {"title": "guide.md", "content": GUIDE, "metadata": {"topic": "coffee"}},
    {"title": "shed", "content": "The garden shed key hangs on the hook behind the door."},
]
CHUNK_QUERIES = ["how do I descale the steamer?", "where is the shed key?", "grind size"]


def provider_env(fake: FakeOpenAI) -> dict[str, str]:
    return {"ENGRAM_OPENAI_BASE_URL": fake.url, "ENGRAM_OPENAI_API_KEY": OPENAI_KEY}


def stack_env(servers: Servers, database: Database, redis: int, **extra: str) -> dict[str, str]:
    return {
        **api_env(servers),
        "ENGRAM_DATABASE_URL": database.app_url,
        "ENGRAM_REDIS_URL": redis_db(servers, redis),
        **extra,
    }


def app(env: dict[str, str], embedder: Any) -> TestClient[Any]:
    """An API over ``env`` (enter it to start)."""
    return TestClient(create_app(Settings.from_env(env), embedders={MINILM_384.name: embedder}))


@pytest.fixture(scope="module")
def fake(embedder: Any) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(embedder.encode, api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def databases(servers: Servers) -> Iterator[Callable[..., Database]]:
    """Make fresh databases on the test server (migrated unless asked not to); dropped after."""
    with ExitStack() as made:

        def make(*, migrated: bool = True) -> Database:
            return made.enter_context(fresh_database(servers, migrated=migrated))

        yield make


class Source(NamedTuple):
    client: TestClient[Any]
    user: str
    headers: dict[str, str]
    export: bytes
    results: list[list[dict[str, Any]]]


@pytest.fixture(scope="module")
def source(servers: Servers, fake: FakeOpenAI, embedder: Any) -> Iterator[Source]:
    """Alice on the test database: memories, a session with messages, and documents, all
    embedded by a real worker; her export and her search results."""
    worker = start_worker(servers, **provider_env(fake))
    try:
        with app({**api_env(servers), **provider_env(fake)}, embedder) as client:
            user, headers = new_user(client)
            fill(client, user, headers)
            answer = client.get(f"/v1/users/{user}/export", headers=headers)
            assert answer.status_code == 200, answer.text
            yield Source(client, user, headers, answer.content, results(client, user, headers))
    finally:
        stop_process(worker)


def new_user(client: TestClient[Any]) -> tuple[str, dict[str, str]]:
    user = f"export-{uuid.uuid4().hex[:10]}"
    answer = client.post("/v1/keys", json={"user_id": user}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return user, {"Authorization": f"Bearer {answer.json()['key']}"}


def fill(client: TestClient[Any], user: str, headers: dict[str, str]) -> None:
    add_memories(client, user, headers, FACTS, metadata={"source": "facts"}, importance=0.7)
    base = f"/v1/users/{user}"
    add_memories(client, user, headers, [OLD_FACT], occurred_at="2001-09-01T08:00:00-04:00")
    french = {"memories": [{"content": FRENCH_FACT}], "language": "french", "wait": True}
    answer = client.post(f"/v1/users/{user}/memories", json=french, headers=headers)
    assert answer.status_code == 200, answer.text
    session = {"id": "trip", "title": "Trip planning", "metadata": {"where": "Lisbon"},
               "started_at": "2024-04-01T18:00:00+01:00"}  # fmt: skip
    assert client.post(f"{base}/sessions", json=session, headers=headers).status_code == 201
    messages = [
        {"role": "user", "content": "I am flying to Lisbon on the 3rd of May.", "name": "Ana",
         "metadata": {"turn": "D1:1"}, "occurred_at": "2024-04-01T18:05:00+01:00"},
        {"role": "assistant", "content": "Noted: your trip to Lisbon starts on May 3rd."},
    ]  # fmt: skip
    answer = client.post(
        f"{base}/sessions/trip/messages", json={"messages": messages}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    batch = client.post(f"{base}/documents", json={"documents": DOCUMENTS}, headers=headers)
    assert batch.status_code == 202, batch.text
    batch_url = f"{base}/batches/{batch.json()['batch_id']}"
    wait_until(
        lambda: (
            client.get(batch_url, headers=headers).json()["status"] == "completed"
            and not client.get(f"{base}/memories?status=pending", headers=headers).json()[
                "memories"
            ]
        ),
        what="everything embedded",
    )


def results(client: TestClient[Any], user: str, headers: dict[str, str]) -> list[Any]:
    """Search answers: memories in minilm-384, chunks in openai-1536."""
    found = [search(client, user, headers, query=q, k=5, types=["memory"]) for q in MEMORY_QUERIES]
    found += [
        search(client, user, headers, query=q, k=5, types=["chunk"], space=OPENAI_1536)
        for q in CHUNK_QUERIES
    ]
    return found


def lines(export: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in export.splitlines()]


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def footprint(database_url: str, user: str) -> dict[str, tuple[Any, ...]]:
    """Count and digest of the user's rows in every table that has a user_id."""
    digest = sql.SQL(
        "SELECT count(*), md5(coalesce(string_agg(r, ',' ORDER BY r), '')) FROM "
        "(SELECT (to_jsonb(t) - 'last_used_at')::text AS r FROM {} AS t WHERE user_id = %s) AS x"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'user_id' ORDER BY 1"
        ).fetchall()
        return {
            table: tuple(conn.execute(digest.format(sql.Identifier(table)), [user]).fetchone())
            for (table,) in tables
        }


def vectors(database_url: str, user: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(
                sql.SQL(
                    "SELECT item_id, kind, content_hash, embedding::text FROM {} "
                    "WHERE user_id = %s ORDER BY item_id"
                ).format(sql.Identifier(table)),
                [user],
            ).fetchall()
            for table in ("vec_minilm_384", "vec_openai_1536")
        }


def states(database_url: str, user: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM embed_state WHERE user_id = %s GROUP BY 1", [user]
        ).fetchall()
    return dict(rows)


def do_import(
    client: TestClient[Any], user: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, Any]]:
    answer = client.post(f"/v1/users/{user}/import", content=body, headers={**headers, **NDJSON})
    return answer.status_code, answer.json()


# ------------------------------------------------------------------------------------------
# the format


def test_the_export_holds_everything_in_the_documented_format(source):
    rows = lines(source.export)
    header, end = rows[0], rows[-1]
    assert header["type"] == "header" and end["type"] == "end"
    assert (header["format"], header["version"], header["user_id"]) == (
        "engram.export",
        1,
        source.user,
    )
    spaces = {s["name"]: s for s in header["spaces"]}
    assert spaces[MINILM_384.name] == {
        "name": "minilm-384",
        "dims": 384,
        "provider": "sentence-transformers",
        "model": MINILM_384.model,
        "storage": "vector",
    }
    assert (spaces[OPENAI_1536]["dims"], spaces[OPENAI_1536]["storage"]) == (1536, "halfvec")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in rows[1:-1]:
        by_type.setdefault(row["type"], []).append(row)
    assert end["counts"] == {kind: len(by_type.get(kind, [])) for kind in end["counts"]}
    memories = by_type["memory"]
    # the facts, the old one, the french one and the two messages
    assert len(memories) == len(FACTS) + 4
    assert {m["content"]: m["occurred_at"] for m in memories}[OLD_FACT] == "2001-09-01T12:00:00Z"
    languages = {m["content"]: m["language"] for m in memories}
    assert languages.pop(FRENCH_FACT) == "french"
    assert set(languages.values()) == {"english"}
    assert {k["language"] for k in by_type["chunk"]} == {"english"}
    assert all(m["occurred_at"] == m["created_at"] for m in memories if m["content"] in FACTS)
    assert all(
        m["embeddings"] == {"minilm-384": {"status": "ready", "error": None}} for m in memories
    )
    assert [(m["seq"], m["session_id"]) for m in by_type["message"]] == [(1, "trip"), (2, "trip")]
    assert by_type["session"][0]["metadata"] == {"where": "Lisbon"}
    assert by_type["session"][0]["started_at"] == "2024-04-01T17:00:00Z"
    said = by_type["message"][0]
    assert (said["name"], said["metadata"]) == ("Ana", {"turn": "D1:1"})
    assert said["occurred_at"] == "2024-04-01T17:05:00Z"
    documents, chunks = by_type["document"], by_type["chunk"]
    assert {d["space"] for d in documents} == {OPENAI_1536} and len(by_type["batch"]) == 1
    assert len(chunks) > len(documents)  # the guide has several chunks
    # every item has exactly one vector, in its own space, at that space's length
    by_space = {(v["space"], v["item_id"]): v for v in by_type["vector"]}
    assert len(by_space) == len(memories) + len(chunks)
    assert all(len(by_space[(MINILM_384.name, m["id"])]["embedding"]) == 384 for m in memories)
    assert all(len(by_space[(OPENAI_1536, k["id"])]["embedding"]) == 1536 for k in chunks)


def test_an_unknown_user_is_an_empty_export(source):
    answer = source.client.get("/v1/users/nobody-ever/export", headers=ADMIN)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    header, end = lines(answer.content)
    assert (header["type"], header["user_id"], end["type"]) == ("header", "nobody-ever", "end")
    assert set(end["counts"].values()) == {0}


def test_only_the_user_or_an_admin_may_export_or_import(source, servers):
    _, bob_headers = new_user(source.client)
    before = footprint(servers.database_url, source.user)
    base = f"/v1/users/{source.user}"
    for headers, status in ((bob_headers, 403), ({}, 401)):
        assert source.client.get(f"{base}/export", headers=headers).status_code == status
        code, body = do_import(source.client, source.user, headers, source.export)
        assert code == status, body
    assert footprint(servers.database_url, source.user) == before


# ------------------------------------------------------------------------------------------
# import into an empty database


class Copy(NamedTuple):
    client: TestClient[Any]
    database: Database
    answer: dict[str, Any]


@pytest.fixture(scope="module")
def copy(source, servers, databases, fake, embedder) -> Iterator[Copy]:
    """Alice's export imported into an empty database with the same spaces; no worker."""
    database = databases()
    with app(stack_env(servers, database, 1, **provider_env(fake)), embedder) as client:
        fake.reset_log()
        status, answer = do_import(client, source.user, ADMIN, source.export)
        assert status == 200, answer
        contents = {
            c for row in lines(source.export) if row["type"] == "chunk" for c in [row["content"]]
        }
        sent = [text for _, body in fake.requests for text in body.get("input", [])]
        assert not contents & set(sent)  # nothing was embedded again
        yield Copy(client, database, answer)


def test_an_import_into_an_empty_database_searches_the_same_without_embedding(source, copy):
    counts = lines(source.export)[-1]["counts"]
    assert copy.answer["imported"] == counts
    assert copy.answer["queued"] == 0 and copy.answer["vectors_skipped"] == 0
    assert copy.answer["from_user_id"] == copy.answer["user_id"] == source.user
    assert states(copy.database.owner_url, source.user) == {"ready": counts["vector"]}
    # identical answers: the same ids in the same order with the same similarities
    assert results(copy.client, source.user, ADMIN) == source.results


def test_an_import_keeps_every_row_and_vector(source, copy, servers):
    assert vectors(copy.database.owner_url, source.user) == vectors(
        servers.database_url, source.user
    )
    base = f"/v1/users/{source.user}"
    for path in ("/memories?limit=100", "/documents", "/sessions", "/sessions/trip/messages"):
        here = copy.client.get(base + path, headers=ADMIN)
        there = source.client.get(base + path, headers=ADMIN)
        assert here.status_code == there.status_code == 200
        assert here.json() == there.json(), path


def test_importing_twice_changes_nothing(source, copy):
    before = footprint(copy.database.owner_url, source.user)
    status, answer = do_import(copy.client, source.user, ADMIN, source.export)
    assert status == 200, answer
    counts = lines(source.export)[-1]["counts"]
    assert set(answer["imported"].values()) == {0}
    assert answer["existing"] == {k: v for k, v in counts.items() if k != "vector"}
    assert (answer["queued"], answer["vectors_skipped"]) == (0, counts["vector"])
    assert footprint(copy.database.owner_url, source.user) == before


def test_an_export_of_the_copy_is_the_same_export(source, copy):
    again = copy.client.get(f"/v1/users/{source.user}/export", headers=ADMIN)
    assert lines(again.content)[1:] == lines(source.export)[1:]  # all but the time


# ------------------------------------------------------------------------------------------
# import elsewhere


def test_an_export_from_before_event_times_imports_with_its_creation_times(source):
    """Lines without ``occurred_at`` (and a message without ``name``, ``metadata``; a session
    without ``started_at``), as exports made before them were: each happened when it was
    created."""
    user, headers = new_user(source.client)
    rows = lines(source.export)
    for row in rows:
        for field in ("occurred_at", "name", "started_at"):
            row.pop(field, None)
        if row["type"] == "message":
            row.pop("metadata")
    status, answer = do_import(source.client, user, headers, ndjson(rows))
    assert status == 200, answer
    memories = source.client.get(f"/v1/users/{user}/memories?limit=100", headers=headers).json()
    assert all(m["occurred_at"] == m["created_at"] for m in memories["memories"])
    said = source.client.get(f"/v1/users/{user}/sessions/trip/messages", headers=headers).json()
    assert all(m["occurred_at"] == m["created_at"] for m in said["messages"])
    assert {(m["name"], str(m["metadata"])) for m in said["messages"]} == {(None, "{}")}
    session = source.client.get(f"/v1/users/{user}/sessions/trip", headers=headers).json()
    assert session["started_at"] is None


def test_an_import_into_another_user_is_that_users(source, servers):
    carol, headers = new_user(source.client)
    alice_before = footprint(servers.database_url, source.user)
    status, answer = do_import(source.client, carol, headers, source.export)
    assert status == 200, answer
    assert (answer["user_id"], answer["from_user_id"]) == (carol, source.user)
    assert answer["queued"] == 0
    assert results(source.client, carol, headers) == source.results  # the same ids, hers now
    assert footprint(servers.database_url, source.user) == alice_before
    exported = lines(source.client.get(f"/v1/users/{carol}/export", headers=headers).content)
    assert exported[0]["user_id"] == carol and exported[1:-1] == lines(source.export)[1:-1]


def test_an_import_without_matching_spaces_is_embedded_again(source, servers, databases, embedder):
    """No openai-1536 here, and (as the header now says) another model made the minilm-384
    vectors: every item is queued in its home space, and a worker makes it ready."""
    rows = lines(source.export)
    for space in rows[0]["spaces"]:
        if space["name"] == MINILM_384.name:
            space["model"] = "someone/another-model"
    database = databases()
    env = stack_env(servers, database, 2)
    with app(env, embedder) as client:
        status, answer = do_import(client, source.user, ADMIN, ndjson(rows))
        assert status == 200, answer
        counts = rows[-1]["counts"]
        assert answer["queued"] == counts["memory"] + counts["chunk"]
        assert answer["vectors_skipped"] == counts["vector"]
        assert states(database.owner_url, source.user) == {"pending": answer["queued"]}
        listed = client.get(f"/v1/users/{source.user}/documents", headers=ADMIN).json()
        assert {(d["space"], d["status"]) for d in listed["documents"]} == {
            (MINILM_384.name, "pending")
        }
        worker = start_worker(
            servers, ENGRAM_DATABASE_URL=database.app_url, ENGRAM_REDIS_URL=env["ENGRAM_REDIS_URL"]
        )
        try:
            wait_until(
                lambda: states(database.owner_url, source.user) == {"ready": answer["queued"]},
                timeout=120,
                what="the imported items to be embedded",
            )
        finally:
            stop_process(worker)
        for query, before in zip(MEMORY_QUERIES, source.results, strict=False):
            found = search(client, source.user, ADMIN, query=query, k=5, types=["memory"])
            assert found[0]["id"] == before[0]["id"], query
            assert found[0]["similarity"] == pytest.approx(before[0]["similarity"], abs=1e-3)
        shed = search(client, source.user, ADMIN, query="where is the shed key?", types=["chunk"])
        assert "shed key" in shed[0]["content"]


# ------------------------------------------------------------------------------------------
# bad input


def _mutations() -> dict[str, Callable[[list[dict[str, Any]]], tuple[list[Any], str]]]:
    """Ways to break an export: each gives the rows and what the error must say."""

    def at(rows: list[dict[str, Any]], kind: str) -> int:
        return next(i for i, row in enumerate(rows) if row["type"] == kind)

    def vector_too_short(rows):
        i = at(rows, "vector")
        rows[i]["embedding"] = rows[i]["embedding"][:10]
        return rows, f"line {i + 1}: embedding has 10 dimensions"

    def nul_in_content(rows):
        i = at(rows, "memory")
        rows[i]["content"] = "nul \x00 here"
        return rows, f"line {i + 1}: content must not contain NUL"

    def unknown_type(rows):
        rows.insert(2, {"type": "photo", "id": str(uuid.uuid4())})
        return rows, "line 3: "

    def no_header(rows):
        return rows[1:], "line 1: an export starts with its header line"

    def no_end(rows):
        return rows[:-1], "truncated"

    def after_the_end(rows):
        return [*rows, rows[at(rows, "memory")]], f"line {len(rows) + 1}: a line after the end"

    def wrong_counts(rows):
        rows[-1]["counts"]["memory"] += 1
        return rows, f"line {len(rows)}: the end line counts"

    def orphan_chunk(rows):
        i = at(rows, "chunk")
        rows[i]["document_id"] = str(uuid.uuid4())
        return rows, f"line {i + 1}: chunk of document"

    def future_version(rows):
        rows[0]["version"] = 2
        return rows, "line 1: export version 2 is not supported"

    def vector_rounds_to_zero(rows):
        i = next(i for i, row in enumerate(rows)
                 if row["type"] == "vector" and row["space"] == "minilm-384")  # fmt: skip
        rows[i]["embedding"] = [1e-46] * len(rows[i]["embedding"])  # zeros in float32
        return rows, f"line {i + 1}: embedding is all zeros in vector precision"

    def halfvec_rounds_to_zero(rows):
        i = next(i for i, row in enumerate(rows)
                 if row["type"] == "vector" and row["space"] == "openai-1536")  # fmt: skip
        rows[i]["embedding"] = [1e-8] * len(rows[i]["embedding"])  # zeros in half precision
        return rows, f"line {i + 1}: embedding is all zeros in halfvec precision"

    def naive_event_time(rows):
        i = at(rows, "message")
        rows[i]["occurred_at"] = "2024-04-01T18:05:00"
        return rows, f"line {i + 1}: "

    def bad_speaker_name(rows):
        i = at(rows, "message")
        rows[i]["name"] = "Ana\x07"
        return rows, f"line {i + 1}: name must not contain control characters"

    def unknown_language(rows):
        i = at(rows, "memory")
        rows[i]["language"] = "klingon"
        return rows, f"line {i + 1}: language 'klingon' is not a text-search configuration"

    def duplicate_memory(rows):
        i = at(rows, "memory")
        rows.insert(i + 1, rows[i])
        rows[-1]["counts"]["memory"] += 1
        return rows, f"line {i + 2}: memory {rows[i]['id']} appears twice"

    return {f.__name__: f for f in (vector_too_short, nul_in_content, unknown_type, no_header,
                                     no_end, after_the_end, wrong_counts, orphan_chunk,
                                     future_version, duplicate_memory, vector_rounds_to_zero,
                                     halfvec_rounds_to_zero, naive_event_time,
                                     bad_speaker_name, unknown_language)}  # fmt: skip


@pytest.fixture(scope="module")
def dana(source) -> tuple[str, dict[str, str]]:
    """A user who already holds a copy of alice's data: bad imports must not touch it."""
    user, headers = new_user(source.client)
    assert do_import(source.client, user, headers, source.export)[0] == 200
    return user, headers


@pytest.mark.parametrize("mutation", list(_mutations()))
def test_a_bad_line_is_a_422_naming_it_and_changes_nothing(source, servers, dana, mutation):
    user, headers = dana
    fresh = f"fresh-{uuid.uuid4().hex[:8]}"
    rows, message = _mutations()[mutation](lines(source.export))
    body = b"".join(
        (row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows
    )
    for target in (user, fresh):  # one who holds the data, one who holds nothing
        before = footprint(servers.database_url, target)
        status, answer = do_import(
            source.client, target, ADMIN if target == fresh else headers, body
        )
        assert status == 422, answer
        assert answer["error"]["code"] == "invalid_input"
        assert message in answer["error"]["message"], answer
        assert footprint(servers.database_url, target) == before


def test_broken_json_an_empty_body_and_the_wrong_media_type_are_refused(source, dana):
    user, headers = dana
    raw = source.export.splitlines()
    broken = b"\n".join([*raw[:2], b'{"type": "memory", "id": ', *raw[2:]])
    status, answer = do_import(source.client, user, headers, broken)
    assert (status, answer["error"]["message"][:7]) == (422, "line 3:")
    status, answer = do_import(source.client, user, headers, b"")
    assert status == 422 and "empty" in answer["error"]["message"]
    as_json = source.client.post(
        f"/v1/users/{user}/import",
        content=source.export,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert as_json.status_code == 415


def test_an_import_has_a_body_limit_of_its_own(source, servers, embedder):
    """ENGRAM_MAX_IMPORT_BYTES, not the other routes' ENGRAM_MAX_BODY_BYTES: an export is big."""
    size = len(source.export)
    env = {**api_env(servers), "ENGRAM_MAX_BODY_BYTES": str(size // 2)}
    with app(env, embedder) as client:
        user, headers = new_user(client)
        assert do_import(client, user, headers, source.export)[0] == 200
    env["ENGRAM_MAX_IMPORT_BYTES"] = str(size - 1)
    with app(env, embedder) as client:
        user, headers = new_user(client)
        status, answer = do_import(client, user, headers, source.export)
        assert (status, answer["error"]["code"]) == (413, "payload_too_large")
        pieces = (source.export[i : i + 4096] for i in range(0, size, 4096))  # no length ahead
        streamed = client.post(
            f"/v1/users/{user}/import", content=pieces, headers={**headers, **NDJSON}
        )
        assert streamed.status_code == 413, streamed.text
        held = footprint(servers.database_url, user)
        assert {table: n for table, (n, _) in held.items() if table != "api_keys"} == dict.fromkeys(
            set(held) - {"api_keys"}, 0
        )


# ------------------------------------------------------------------------------------------
# backup and restore of the whole database


def engram(servers: Servers, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The ``engram`` command, as an operator runs it."""
    return engram_in(servers.home, *args, **env)


def engram_in(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    return subprocess.run(
        [sys.executable, "-m", "service.ops.cli", *args],
        env={**base, "ENGRAM_HOME": str(home), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def every_row(database_url: str) -> dict[str, tuple[Any, ...]]:
    """Count and digest of every table of the database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        return {
            table: tuple(
                conn.execute(
                    sql.SQL(
                        "SELECT count(*), md5(coalesce(string_agg(r, ',' ORDER BY r), '')) "
                        "FROM (SELECT (to_jsonb(t) - 'last_used_at')::text AS r FROM {} t) x"
                    ).format(sql.Identifier(table))
                ).fetchone()
            )
            for (table,) in tables
        }


def test_backup_and_restore_round_trip(source, copy, servers, databases, fake, embedder, tmp_path):
    # the copy's database: nothing else writes to it (the shared one has a live worker)
    rows_before = every_row(copy.database.owner_url)
    archive = tmp_path / "engram.dump"
    made = engram(
        servers, "backup", str(archive), ENGRAM_ADMIN_DATABASE_URL=copy.database.owner_url
    )
    assert made.returncode == 0, made.stderr
    assert "backed up engram" in made.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # every user's data is in it

    target = databases(migrated=False)
    restored = engram(servers, "restore", str(archive), ENGRAM_ADMIN_DATABASE_URL=target.owner_url)
    assert restored.returncode == 0, restored.stderr
    assert f"schema now at {schema.head_revision()}" in restored.stdout
    assert every_row(target.owner_url) == rows_before
    env = stack_env(servers, target, 3, **provider_env(fake))
    with app(env, embedder) as client:  # as engram_app: grants and row policies came back too
        assert results(client, source.user, ADMIN) == source.results

    again = engram(servers, "restore", str(archive), ENGRAM_ADMIN_DATABASE_URL=target.owner_url)
    assert again.returncode == 1
    assert "not empty" in again.stderr and "--clean" in again.stderr
    with psycopg.connect(target.owner_url, autocommit=True) as conn:
        conn.execute("DELETE FROM memories WHERE user_id = %s", [source.user])
    clean = engram(
        servers, "restore", "--clean", str(archive), ENGRAM_ADMIN_DATABASE_URL=target.owner_url
    )
    assert clean.returncode == 0, clean.stderr
    assert every_row(target.owner_url) == rows_before


def test_backup_and_restore_say_what_is_wrong(servers, databases, tmp_path):
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_text("hello")
    target = databases(migrated=False)
    url = {"ENGRAM_ADMIN_DATABASE_URL": target.owner_url}
    answer = engram(servers, "restore", str(not_a_dump), **url)
    assert answer.returncode == 1 and "is not a backup" in answer.stderr
    answer = engram(servers, "restore", str(tmp_path / "missing.dump"), **url)
    assert answer.returncode == 1 and "no such file" in answer.stderr
    answer = engram(servers, "backup", str(tmp_path), **url)
    assert answer.returncode == 1 and "is a directory" in answer.stderr
    unreachable = with_dbname(servers.database_url, "no_such_database")
    answer = engram(
        servers, "backup", str(tmp_path / "x.dump"), ENGRAM_ADMIN_DATABASE_URL=unreachable
    )
    assert answer.returncode == 1 and "cannot reach the database" in answer.stderr
    assert not (tmp_path / "x.dump").exists()


def test_backup_and_restore_with_the_embedded_server(copy, servers, tmp_path):
    """Without a database URL: the embedded server of ENGRAM_HOME, started for the job and
    stopped after; never restored into while `engram run` holds the home."""
    rows_before = every_row(copy.database.owner_url)
    archive = tmp_path / "engram.dump"
    made = engram(
        servers, "backup", str(archive), ENGRAM_ADMIN_DATABASE_URL=copy.database.owner_url
    )
    assert made.returncode == 0, made.stderr
    home = tmp_path / "home"
    answer = engram_in(home, "backup", str(tmp_path / "nothing.dump"))
    assert answer.returncode == 1 and "no database" in answer.stderr

    restored = engram_in(home, "restore", str(archive))  # a new cluster, made for it
    assert restored.returncode == 0, restored.stderr
    again = engram_in(home, "backup", str(tmp_path / "again.dump"))
    assert again.returncode == 0, again.stderr
    postgres = EmbeddedPostgres(home)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.url, connect_timeout=2).close()  # nothing left running
    try:
        assert every_row(postgres.start()) == rows_before
    finally:
        postgres.stop()

    with open(home / "engram.lock", "a") as lock:  # as `engram run` holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = engram_in(home, "restore", "--clean", str(archive))
    assert busy.returncode == 1 and "stop it" in busy.stderr
