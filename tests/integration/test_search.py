"""Search features over real data: filters, hybrid, diversity, recency/importance weights."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pgvector.psycopg import register_vector
from support.api import ADMIN, add_memories, search
from support.processes import wait_until
from support.searching import index_vectors, search_directly

from models.db.pool import create_pool
from models.db.scope import read_batch
from models.embedding.spaces import MINILM_384
from models.search import statements
from models.search.hints import SizeHints
from models.search.planner import search as search_items
from models.search.query import SearchQuery
from models.search.statements import Statements, hnsw_settings
from models.search.turns import FILLED_IN
from models.types import SearchHit

pytestmark = pytest.mark.usefixtures("worker")

BOOKS = [
    ({"genre": "scifi", "year": 1965, "tags": "classic", "rating": 4.5}, "Dune: a desert planet"),
    ({"genre": "scifi", "year": 1984, "tags": "cyberpunk", "rating": 4.1}, "Neuromancer hackers"),
    ({"genre": "fantasy", "year": 1954, "tags": "classic", "rating": 4.8}, "The Lord of the Rings"),
    ({"genre": "fantasy", "year": 1997, "rating": 4.3}, "Harry Potter and the wizard school"),
    ({"genre": "mystery", "year": 1926, "tags": "classic"}, "Murder of Roger Ackroyd"),
]


@pytest.fixture
def library(client, new_user):
    user, headers = new_user()
    for metadata, content in BOOKS:
        add_memories(client, user, headers, [content], metadata=metadata)
    return user, headers


def titles(results):
    return sorted(r["content"].split()[0].strip(":") for r in results)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"genre": "scifi"}, ["Dune", "Neuromancer"]),
        ({"genre": {"$ne": "scifi"}}, ["Harry", "Murder", "The"]),
        ({"year": {"$gte": 1960, "$lt": 1990}}, ["Dune", "Neuromancer"]),
        ({"year": {"$lte": 1954}}, ["Murder", "The"]),
        ({"rating": {"$gt": 4.4}}, ["Dune", "The"]),
        ({"genre": {"$in": ["mystery", "fantasy"]}}, ["Harry", "Murder", "The"]),
        ({"genre": {"$nin": ["mystery", "fantasy"]}}, ["Dune", "Neuromancer"]),
        ({"tags": {"$exists": False}}, ["Harry"]),
        ({"$or": [{"genre": "mystery"}, {"year": {"$gt": 1990}}]}, ["Harry", "Murder"]),
        ({"$and": [{"tags": "classic"}, {"genre": {"$ne": "fantasy"}}]}, ["Dune", "Murder"]),
        ({"genre": {"$eq": "nothing"}}, []),
    ],
)
def test_filter_language(client, library, conditions, expected):
    user, headers = library
    results = search(client, user, headers, query="a book", k=10, filter=conditions)
    assert titles(results) == expected


def test_created_at_ranges(client, library):
    user, headers = library
    now = datetime.now(UTC)
    future = (now + timedelta(days=1)).isoformat()
    past = (now - timedelta(days=1)).isoformat()
    assert search(client, user, headers, query="book", created_after=future) == []
    assert len(search(client, user, headers, query="book", created_after=past)) == 5
    assert search(client, user, headers, query="book", created_before=past) == []


def test_occurred_at_ranges_filter_by_when_items_happened(client, new_user):
    """``occurred_after`` (inclusive) and ``occurred_before`` (exclusive) on the event time,
    in both modes, compared as instants whatever the offset."""
    user, headers = new_user()
    days = [datetime(2023, 5, d, 9, tzinfo=UTC) for d in (1, 2, 3, 4)]
    for day in days:
        add_memories(client, user, headers, [f"Diary of May {day.day}"], occurred_at=str(day))
    for mode in ("vector", "hybrid"):
        found = search(client, user, headers, query="diary", mode=mode,
                       occurred_after=days[1].isoformat(),
                       occurred_before=days[3].isoformat())  # fmt: skip
        assert sorted(h["content"] for h in found) == ["Diary of May 2", "Diary of May 3"]
        assert sorted(h["occurred_at"] for h in found) == [
            "2023-05-02T09:00:00Z",
            "2023-05-03T09:00:00Z",
        ]
    early = "2023-05-01T09:00:00+00:00"
    assert search(client, user, headers, query="diary", occurred_before=early) == []
    offset = "2023-05-04T11:00:00+02:00"  # 09:00 UTC: the last diary
    last = search(client, user, headers, query="diary", occurred_after=offset)
    assert [h["content"] for h in last] == ["Diary of May 4"]


def test_an_occurred_at_range_still_gives_k_of_many(client, new_user):
    """A filter on event time reads every vector of the user: k results whenever k match,
    however far down the nearest they lie."""
    user, headers = new_user()
    then = datetime(2020, 1, 1, tzinfo=UTC).isoformat()
    add_memories(client, user, headers, [f"Note {n} about the weather today" for n in range(60)])
    add_memories(client, user, headers, [f"An old line {n} on gardening" for n in range(3)],
                 occurred_at=then)  # fmt: skip
    found = search(client, user, headers, query="the weather today", k=3,
                   occurred_before="2021-01-01T00:00:00Z")  # fmt: skip
    old = sorted(h["content"] for h in found)
    assert old == [f"An old line {n} on gardening" for n in range(3)]
    recent = search(client, user, headers, query="weather", k=100,
                    occurred_after="2021-01-01T00:00:00Z")  # fmt: skip
    assert len(recent) == 60


def test_hybrid_finds_exact_names_and_codes_that_vector_search_misses(client, new_user):
    """A small labelled set: look-alike codes that embeddings blur together. Evenly fused,
    a code is first or (tied with the vector side's first) second; weighing words more, as
    a search for codes may, it is always first."""
    user, headers = new_user()
    codes = ["HU-9916", "HU-9961", "UH-9916", "HU-9169", "HV-9916", "HU-6916", "UH-9961"]
    issues = ["the printer jams", "a password reset", "the VPN drops", "email bounces",
              "the laptop overheats", "a broken monitor", "slow wifi"]  # fmt: skip
    notes = [f"Ticket {code}: {issue}." for code, issue in zip(codes, issues, strict=True)]
    add_memories(client, user, headers, notes)
    vector_hits = hybrid_hits = 0
    for code, wanted in zip(codes, notes, strict=True):
        vector = search(client, user, headers, query=code, k=1)
        hybrid = search(client, user, headers, query=code, k=3, mode="hybrid")
        words = search(client, user, headers, query=code, k=1, mode="hybrid", fusion={"text": 2})
        vector_hits += vector[0]["content"] == wanted
        hybrid_hits += hybrid[0]["content"] == wanted
        assert wanted in [h["content"] for h in hybrid[:2]]
        assert words[0]["content"] == wanted
        assert 0 < hybrid[0]["score"] <= 1  # the fused score; similarity stays cosine
        assert -1 <= hybrid[0]["similarity"] <= 1
    assert vector_hits < hybrid_hits


def test_hybrid_still_returns_k_results_sorted_by_score(client, library):
    user, headers = library
    results = search(client, user, headers, query="wizard", k=4, mode="hybrid")
    assert len(results) == 4
    assert results[0]["content"].startswith("Harry Potter")
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_diversity_trades_near_duplicates_for_coverage(client, new_user):
    user, headers = new_user()
    add_memories(client, user, headers, [
        "I love espresso in the morning.",
        "I love espresso every morning.",
        "I really love morning espresso.",
        "Green tea helps me focus in the afternoon.",
    ])  # fmt: skip
    plain = search(client, user, headers, query="coffee in the morning", k=2)
    diverse = search(client, user, headers, query="coffee in the morning", k=2, diversity=0.7)
    assert all("espresso" in r["content"] for r in plain)
    assert any("tea" in r["content"] for r in diverse)
    assert [r["score"] for r in diverse] == sorted((r["score"] for r in diverse), reverse=True)
    assert search(client, user, headers, query="coffee", k=4, diversity=0.5).__len__() == 4


def test_importance_weighting_is_opt_in(client, new_user):
    user, headers = new_user()
    add_memories(client, user, headers, ["Sam enjoys hiking in the Alps."], importance=0.0)
    add_memories(client, user, headers, ["Sam likes walking in mountains."], importance=1.0)
    plain = search(client, user, headers, query="Sam enjoys hiking in the Alps", k=2)
    weighted = search(client, user, headers, query="Sam enjoys hiking in the Alps", k=2,
                      weights={"importance": 0.6})  # fmt: skip
    assert plain[0]["content"].startswith("Sam enjoys")
    assert weighted[0]["content"].startswith("Sam likes")
    assert all(r["score"] == r["similarity"] for r in plain)
    top = weighted[0]
    assert top["score"] == pytest.approx(0.4 * top["similarity"] + 0.6 * 1.0, abs=1e-3)


def test_recency_weighting_ages_memories_from_when_they_happened(client, new_user, db):
    """Recency counts from ``occurred_at``: a memory written today about a year ago is old,
    and one written long ago about today is fresh."""
    user, headers = new_user()
    year_ago = (datetime.now(UTC) - timedelta(days=365)).isoformat()
    add_memories(client, user, headers, ["Kim's favourite colour is blue."], occurred_at=year_ago)
    new = add_memories(client, user, headers, ["Kim's favourite colour is green now."])[0]
    db.execute("UPDATE memories SET created_at = now() - interval '365 days' WHERE id = %s",
               [new["id"]])  # fmt: skip
    weighted = search(client, user, headers, query="Kim's favourite colour is blue", k=2,
                      weights={"recency": 0.5, "half_life_days": 30})  # fmt: skip
    assert weighted[0]["content"].endswith("green now.")
    assert weighted[1]["occurred_at"].startswith(year_ago[:10])


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "weights": {"recency": 0.7, "importance": 0.7}},
        {"query": "x", "weights": {"half_life_days": 0}},
        {"query": "x", "diversity": 1.5},
        {"vector": [0.1] * 384, "mode": "hybrid"},
        {"query": "x", "neighbors": 11},
        {"query": "x", "neighbors": -1},
        {"query": "x", "occurred_after": "2024-05-01T09:00:00"},
        {"query": "x", "occurred_before": "10000-01-01T00:00:00Z"},
        {"query": "x", "occurred_after": "0001-01-01T00:00:00+14:00"},
    ],
    ids=[
        "weights-over-one",
        "zero-half-life",
        "diversity-over-one",
        "hybrid-without-text",
        "neighbors-over-ten",
        "neighbors-negative",
        "naive-time",
        "year-10000",
        "before-year-1-in-utc",
    ],
)
def test_bad_ranking_options_are_422(client, new_user, body):
    user, headers = new_user()
    answer = client.post(f"/v1/users/{user}/search", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    for field in {"neighbors", "occurred_after", "occurred_before"} & body.keys():
        assert field in answer.json()["error"]["message"]


def test_the_hnsw_path_is_complete_and_agrees_with_the_exact_path(
    client, new_user, servers, embedder
):
    """Force the HNSW path (a tiny exact threshold) and compare it with the exact path."""
    user, headers = new_user()
    notes = [f"note {i} about {topic}" for i, topic in enumerate(["tea", "rain", "jazz"] * 10)]
    add_memories(client, user, headers, notes, metadata={"kind": "note"})
    assert index_vectors(servers, user) == 30
    query = SearchQuery(vector=embedder.encode(["jazz music"])[0], k=7, metadata={"kind": "note"})

    exact = search_directly(servers, user, query, exact_max_rows=1000)
    hnsw = search_directly(servers, user, query, exact_max_rows=5)
    assert len(exact) == len(hnsw) == 7
    assert [h.id for h in hnsw] == [h.id for h in exact]
    assert all("jazz" in h.content for h in hnsw[:3])


def test_the_exact_path_never_takes_the_hnsw_index(client, new_user, servers, embedder, db):
    """pgvector filters by user only after an HNSW scan, so the exact statement must not use
    the index even where the planner would like to: here, with sorts disabled. The same
    statement ordered by the bare distance does take it, so the check can fail."""
    user, headers = new_user()
    add_memories(client, user, headers, [f"note {i} about tea" for i in range(12)])
    sent: list[Any] = []
    query = SearchQuery(vector=embedder.encode(["tea"])[0], k=5, types=("memory",))
    assert len(search_directly(servers, user, query, sent, exact_max_rows=1000)) == 5
    (exact,) = sent

    register_vector(db)

    def plan(sql: str) -> str:
        with db.transaction():
            db.execute("SET LOCAL enable_sort = off")
            return "\n".join(row[0] for row in db.execute("EXPLAIN " + sql, exact.params))

    assert "hnsw" not in plan(exact.query)
    # the index holds indexed vectors only: a statement the planner could answer from it
    control = exact.query.replace(") + 0 AS distance", ") AS distance").replace(
        "v.kind = 'memory'", "v.kind = 'memory' AND v.indexed"
    )
    assert "hnsw" in plan(control)


def test_vector_counts_follow_every_write(client, new_user, servers, db):
    """The counts a search chooses its path by (kept by triggers: vectors, and how many are
    unindexed) match the vectors through writes, indexing, updates, deletes, a change of
    type and erasure."""
    user, headers = new_user()

    def counted(kind: str = "memory") -> tuple[tuple[int, int], tuple[int, int]]:
        kept = db.execute(
            "SELECT coalesce(sum(vectors), 0), coalesce(sum(unindexed), 0) FROM vector_counts "
            "WHERE user_id = %s AND space = %s AND kind = %s",
            [user, MINILM_384.name, kind],
        ).fetchone()
        real = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT indexed) FROM vec_minilm_384 "
            "WHERE user_id = %s AND kind = %s",
            [user, kind],
        ).fetchone()
        assert kept is not None and real is not None
        return (int(kept[0]), int(kept[1])), (int(real[0]), int(real[1]))

    stored = add_memories(client, user, headers, [f"garden note {i}" for i in range(12)])
    assert counted() == ((12, 12), (12, 12))  # written unindexed
    assert index_vectors(servers, user, batch=5) == 12
    assert counted() == ((12, 0), (12, 0))
    for memory in stored[:5]:
        answer = client.delete(f"/v1/users/{user}/memories/{memory['id']}", headers=headers)
        assert answer.status_code in (200, 204), answer.text
    assert counted() == ((7, 0), (7, 0))
    changed = client.patch(
        f"/v1/users/{user}/memories/{stored[6]['id']}",
        json={"content": "a new note about the garden"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    url = f"/v1/users/{user}/memories/{stored[6]['id']}"
    wait_until(lambda: client.get(url, headers=headers).json()["status"] == "ready")
    assert counted() == ((7, 1), (7, 1))  # its new vector waits to be indexed
    # a vector whose type changes (an import replacing an old item's vector) moves its counts
    for item in (stored[5]["id"], stored[6]["id"]):
        db.execute(
            "UPDATE vec_minilm_384 SET kind = 'chunk' WHERE user_id = %s AND item_id = %s",
            [user, item],
        )
    assert counted() == ((5, 0), (5, 0))
    assert counted("chunk") == ((2, 1), (2, 1))
    assert client.delete(f"/v1/users/{user}", headers=ADMIN).status_code == 200
    assert counted() == ((0, 0), (0, 0))
    assert counted("chunk") == ((0, 0), (0, 0))


def test_the_path_follows_the_count_as_a_user_shrinks(client, new_user, servers, embedder):
    """Over the exact-search cap a user takes the HNSW path (and is remembered as large);
    after deletes, the exact one, hint or not, with the same answers as an exact search."""
    user, headers = new_user()
    stored = add_memories(client, user, headers, [f"garden note {i}" for i in range(12)])
    index_vectors(servers, user)
    query = SearchQuery(vector=embedder.encode(["garden"])[0], k=10)

    def run(**options: Any) -> list[Any]:
        return search_directly(servers, user, query, **options)

    hints = SizeHints()
    assert len(run(exact_max_rows=5, hints=hints)) == 10  # 12 vectors: HNSW
    assert hints.path(MINILM_384.name, user, "memory") == "approximate"
    assert hints.path(MINILM_384.name, user, "chunk") == "none"
    for memory in stored[:7]:
        answer = client.delete(f"/v1/users/{user}/memories/{memory['id']}", headers=headers)
        assert answer.status_code in (200, 204), answer.text
    small = run(exact_max_rows=5, hints=hints)  # 5 vectors: exact, hint or not
    exact = run(exact_max_rows=100)
    assert len(small) == len(exact) == 5
    assert [h.id for h in small] == [h.id for h in exact]
    assert hints.path(MINILM_384.name, user, "memory") == "exact"


def test_a_type_without_vectors_is_left_out_until_it_has_some(
    client, new_user, servers, embedder, db
):
    """A user without documents needs no chunk statement: the hint leaves it out while the
    memory statement reports the chunk count, and a first document brings it back."""
    user, headers = new_user()
    add_memories(client, user, headers, [f"espresso note {i}" for i in range(3)])
    query = SearchQuery(vector=embedder.encode(["espresso grind size"])[0], k=5)
    hints = SizeHints()

    def run(sent: list[Any]) -> list[Any]:
        return search_directly(servers, user, query, sent, exact_max_rows=1000, hints=hints)

    first: list[Any] = []
    assert len(run(first)) == 3
    assert len(first) == 2  # nothing known yet: memories and chunks
    assert hints.path(MINILM_384.name, user, "chunk") == "none"
    second: list[Any] = []
    assert len(run(second)) == 3
    assert len(second) == 1  # memories alone; their statement reports the chunk count

    document = {"content": "Espresso grind size: fine, like table salt."}
    answer = client.post(
        f"/v1/users/{user}/documents", json={"documents": [document]}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    chunks = "SELECT 1 FROM vector_counts WHERE user_id = %s AND kind = 'chunk' AND vectors > 0"
    wait_until(lambda: bool(db.execute(chunks, (user,)).fetchall()), what="the chunk's vector")
    third: list[Any] = []
    hits = run(third)
    assert len(third) == 2  # memories, then chunks in a second round trip
    assert len(hits) == 4
    assert "chunk" in {h.type for h in hits}
    assert hits == search_directly(servers, user, query, exact_max_rows=1000)  # no hints
    assert hints.path(MINILM_384.name, user, "chunk") == "exact"


def test_a_new_user_leaves_out_a_type_no_user_of_the_space_lately_had(
    client, new_user, servers, embedder, db
):
    """Users never searched before send no chunk statement while the users lately seen had
    no chunks; a user with chunks is still searched completely (a second round trip), and
    brings the chunk statement back for the next new user."""
    query = SearchQuery(vector=embedder.encode(["espresso grind size"])[0], k=5)
    hints = SizeHints()

    def user_with(notes: int, *, document: bool = False) -> str:
        user, headers = new_user()
        add_memories(client, user, headers, [f"espresso note {i}" for i in range(notes)])
        if document:
            body = {"documents": [{"content": "Espresso grind size: fine, like table salt."}]}
            answer = client.post(f"/v1/users/{user}/documents", json=body, headers=headers)
            assert answer.status_code == 202, answer.text
            chunks = "SELECT 1 FROM vector_counts WHERE user_id = %s AND kind = 'chunk'"
            wait_until(lambda: bool(db.execute(chunks, (user,)).fetchall()), what="chunks")
        return user

    def statements_for(user: str, found: int) -> int:
        sent: list[Any] = []
        hits = search_directly(servers, user, query, sent, exact_max_rows=1000, hints=hints)
        assert len(hits) == found
        assert hits == search_directly(servers, user, query, exact_max_rows=1000)  # no hints
        return len(sent)

    assert statements_for(user_with(2), found=2) == 2  # nothing known yet
    assert statements_for(user_with(3), found=3) == 1  # lately, nobody had chunks
    assert statements_for(user_with(1, document=True), found=2) == 2  # in two round trips
    assert statements_for(user_with(2), found=2) == 2  # somebody had chunks lately


def test_a_window_of_expired_items_still_gives_complete_answers(
    client, new_user, servers, embedder, db
):
    """The exact path looks at the nearest 40 vectors first; when most of their items have
    expired, the answer is still complete and exact."""
    user, headers = new_user()
    stored = add_memories(client, user, headers, [f"garden note {i}" for i in range(45)])
    index_vectors(servers, user)
    query = SearchQuery(vector=embedder.encode(["garden"])[0], k=10)

    def run(**options: Any) -> list[Any]:
        return search_directly(servers, user, query, **{"exact_max_rows": 1000, **options})

    assert len(run()) == 10
    expired = [m["id"] for m in stored[:40]]
    db.execute(
        "UPDATE memories SET expires_at = now() - interval '1 second' "
        "WHERE user_id = %s AND id = ANY(%s::uuid[])",
        [user, expired],
    )
    windowed = run()  # the window holds expired items, mostly
    everything = run(exact_max_rows=0)  # HNSW, then exact when short
    assert len(windowed) == len(everything) == 5
    assert [h.id for h in windowed] == [h.id for h in everything]
    assert not {str(h.id) for h in windowed} & set(expired)


@pytest.mark.parametrize("kind", ["memory", "chunk"])
@pytest.mark.parametrize("shape", ["exact", "approximate", "all", "text"])
def test_search_rows_carry_a_hits_columns_by_name(db, embedder, kind, shape):
    """Hits are made from their columns' names, so every statement names each of SearchHit's
    fields once (after the four counts in a counted statement), and nothing else."""
    query = SearchQuery(vector=embedder.encode(["anything"])[0], k=3, text="anything")
    statements = Statements(MINILM_384, "nobody", query, cap=20_000)
    statement = statements.text(kind) if shape == "text" else statements.vector(kind, shape)
    register_vector(db)
    cursor = db.execute(statement.query, statement.params)
    names = [column.name for column in cursor.description or ()]
    counted = shape in ("exact", "approximate")
    counts = ["counted", "unindexed", "other_n", "other_unindexed"] if counted else []
    columns = [f for f in SearchHit.__struct_fields__ if f not in FILLED_IN]
    assert sorted(names) == sorted([*counts, *columns])


@pytest.mark.usefixtures("worker")
def test_a_long_hybrid_query_searches_by_its_first_distinct_words(client, new_user):
    """The text side takes a query's first 64 distinct words: a query of thousands of words
    costs the index no more than one of a few dozen, and still finds what its words name."""
    user, headers = new_user()
    add_memories(client, user, headers, ["Invoice QX-5521 was paid in March.", "Tea at noon."])
    words = " ".join(f"filler{n}" for n in range(3000))
    found = search(client, user, headers, query=f"QX-5521 {words}", mode="hybrid", k=1)
    assert found[0]["content"] == "Invoice QX-5521 was paid in March."


def test_a_selective_filter_on_a_large_user_is_measured_exactly(
    client, new_user, servers, embedder, db, monkeypatch
):
    """On the HNSW path, a filter that at most ``SELECTIVE_MAX`` items meet is answered by
    measuring those items (the index is not read); a broader one reads the index. Both
    answer as an exact search does, each item once, even one that meets two of the
    filter's values."""
    user, headers = new_user()
    notes = [f"note {i} about {t}" for i, t in enumerate(["tea", "rain", "jazz", "chess"] * 30)]
    body = {
        "memories": [
            {"content": c, "metadata": {"tenth": i % 10, "fifth": i % 5}}
            for i, c in enumerate(notes)
        ],
        "wait": True,
    }
    answer = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert index_vectors(servers, user) == 120
    register_vector(db)
    vector = embedder.encode(["jazz records"])[0]

    # an equality is found through the metadata index; a range by reading the user's items;
    # the 12 notes of tenth 2 are among the 24 of fifth 2, so the index finds 36 for 24
    both = {"$or": [{"tenth": 2}, {"fifth": 2}]}
    cases = (
        ({"tenth": 3}, 20, False, True),
        ({"tenth": {"$lt": 6}}, 20, True, False),
        (both, 36, False, True),
        (both, 35, True, True),  # counted by value: 36 is more than 35, though 24 items
    )
    for condition, selective_max, read_index, through_metadata_index in cases:
        monkeypatch.setattr(statements, "SELECTIVE_MAX", selective_max)  # this small user
        query = SearchQuery(vector=vector, k=10, metadata=condition)
        sent: list[Any] = []
        hnsw = search_directly(servers, user, query, sent, exact_max_rows=20)
        exact = search_directly(servers, user, query, exact_max_rows=10**6)
        assert [h.id for h in hnsw] == [h.id for h in exact]
        assert len(hnsw) == 10
        (statement,) = [s for s in sent if "candidates" in s.query]
        assert ("memories_containing" in statement.query) == through_metadata_index
        with db.transaction():
            settings = {"engram.user_id": user, **hnsw_settings(800, 10, filtered=True)}
            for name, value in settings.items():  # as the planner sends them
                db.execute("SELECT set_config(%s, %s, true)", [name, value])
            plan = "\n".join(
                row[0]
                for row in db.execute(
                    "EXPLAIN (ANALYZE, COSTS OFF) " + statement.query, statement.params
                )
            )
        scan = next(line for line in plan.splitlines() if "vec_minilm_384_hnsw" in line)
        assert ("never executed" not in scan) == read_index, plan
        # each item is joined to what was found by its key: never a scan of the user's items
        # to hash or merge them, whatever the planner guesses the unindexed tail holds
        assert "Hash Join" not in plan and "Merge Join" not in plan, plan


def test_hybrid_search_on_the_hnsw_path_answers_as_the_exact_path_does(
    client, new_user, servers, embedder
):
    """A user whose vectors are in the HNSW index: hybrid search, with and without a filter
    on the items, ranks what the exact path ranks, score for score, and gives ``k`` results
    when the user has ``k`` matching items; a code is found first, by its words."""
    user, headers = new_user()
    topics = ["tea", "rain", "jazz", "chess"]
    notes = [f"note {i} about {topics[i % 4]}" for i in range(80)]
    notes[37] = "the locker code is QX-5521, by the tea shelf"
    body = {
        "memories": [{"content": c, "metadata": {"tenth": i % 10}} for i, c in enumerate(notes)],
        "wait": True,
    }
    answer = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert index_vectors(servers, user) == 80
    text = "QX-5521"
    vector = embedder.encode([text])[0]
    for condition, k, matching in ((None, 10, 80), ({"tenth": 7}, 10, 8), ({"tenth": 7}, 8, 8)):
        query = SearchQuery(vector=vector, k=k, text=text, hybrid=True, metadata=condition)
        sent: list[Any] = []
        hnsw = search_directly(servers, user, query, sent, exact_max_rows=20)
        exact = search_directly(servers, user, query, exact_max_rows=10**6)
        assert any("v.indexed" in s.query for s in sent)  # the HNSW path's statements
        assert [(h.id, h.score) for h in hnsw] == [(h.id, h.score) for h in exact]
        assert len(hnsw) == min(k, matching)
        if condition is None:
            assert hnsw[0].content == notes[37]  # the code, found by its words
        else:
            assert hnsw[0].content == notes[37]
            assert {h.content for h in hnsw} <= {notes[i] for i in range(7, 80, 10)}


def test_searches_with_conditions_on_items_are_planned_for_their_values_every_time(
    client, new_user, servers, embedder
):
    """A prepared statement would switch to a generic plan after five runs, which cannot
    know how many items a user has. A search with a condition on the items and one without
    are prepared alike (their conditions are parameters): the first is planned for its
    values every time, however often it runs, the second takes the generic plan."""
    user, headers = new_user()
    add_memories(client, user, headers, [f"garden note {i}" for i in range(8)])
    vector = embedder.encode(["garden"])[0]
    after = datetime.now(UTC) - timedelta(days=1)
    filtered = SearchQuery(vector=vector, k=3, types=("memory",), created_after=after)
    plain = SearchQuery(vector=vector, k=3, types=("memory",))
    runs = 8

    async def run() -> list[tuple[int, int]]:
        pool = create_pool(servers.app_url, min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            read = functools.partial(read_batch, pool, user)
            for _ in range(runs):
                for query in (filtered, plain):
                    found = await search_items(read, MINILM_384, user, query, exact_max_rows=1000)
                    assert len(found) == 3
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE '%nearest AS%'"
                )
                return [(int(row[0]), int(row[1])) for row in await cursor.fetchall()]
        finally:
            await pool.close()

    # (generic plans, custom plans) of each prepared statement
    assert sorted(asyncio.run(run())) == [(0, runs), (runs, 0)]
