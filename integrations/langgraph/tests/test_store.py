"""``EngramStore`` against a real `engram api` process and a real worker, answer by answer
beside LangGraph's own ``InMemoryStore`` given the same embeddings (the local
all-MiniLM-L6-v2 that Engram embeds with): puts, overwrites, deletes, gets, searches with
and without a query, filters, offsets and limits, namespace listings; batches written whole
or not at all; TTL expiry and refresh; one Engram user's store never seeing another's."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engram_client import Engram, InvalidRequestError, PermissionDeniedError
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    PutOp,
    SearchItem,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore
from langgraph_engram import EngramStore
from support.processes import ADMIN_KEY

from models.embedding.provider import Embedder

pytestmark = pytest.mark.usefixtures("worker")

SCORE_TOLERANCE = 2e-3  # Engram stores float32 vectors; the in-memory store keeps float64
FIELDS = ["text"]

ITEMS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("users", "alice", "memories"), "coffee", {"text": "Alice drinks her coffee black", "n": 3}),
    (("users", "alice", "memories"), "bike", {"text": "Alice rides a red bicycle", "n": 7}),
    (("users", "alice", "prefs"), "theme", {"text": "dark theme in every editor", "n": 1}),
    (("users", "bob", "memories"), "tea", {"text": "Bob prefers green tea", "n": 5}),
    (("users", "bob", "memories"), "dog", {"text": "Bob walks his dog at dawn", "n": 2}),
    (("docs",), "python", {"text": "A Python tutorial for beginners", "tags": ["code"]}),
    (("docs", "v1"), "ts", {"text": "A TypeScript guide", "meta": {"lang": "ts", "v": 1}}),
    (("docs", "v2"), "go", {"text": "Go concurrency patterns", "meta": {"lang": "go", "v": 2}}),
]


@pytest.fixture(scope="module")
def admin(api_url: str) -> Iterator[Engram]:
    with Engram(api_url, ADMIN_KEY) as client:
        yield client


@pytest.fixture
def new_store(api_url: str, admin: Engram) -> Iterator[Callable[..., EngramStore]]:
    """Stores of fresh Engram users, each with a key of its own user."""
    made: list[EngramStore] = []

    def make(**options: Any) -> EngramStore:
        user_id = f"lg-{uuid.uuid4().hex[:12]}"
        key = admin.create_key(user_id).key
        store = EngramStore(user_id, url=api_url, api_key=key, timeout=120, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()  # the async client is closed by the test whose event loop used it


@pytest.fixture(scope="module")
def reference(embedder: Embedder) -> Callable[[], InMemoryStore]:
    """LangGraph's in-memory store, embedding with Engram's model."""

    def embed(texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in embedder.encode(texts)]  # type: ignore[attr-defined]

    return lambda: InMemoryStore(index={"dims": 384, "embed": embed, "fields": FIELDS})


def seen(items: list[Item] | list[SearchItem]) -> list[tuple[tuple[str, ...], str, Any]]:
    return [(item.namespace, item.key, item.value) for item in items]


def as_set(items: list[Item] | list[SearchItem]) -> set[tuple[tuple[str, ...], str, str]]:
    return {(item.namespace, item.key, json.dumps(item.value, sort_keys=True)) for item in items}


def put_all(stores: tuple[BaseStore, ...], items: list[Any] = ITEMS) -> None:
    for store in stores:
        store.batch([PutOp(ns, key, value) for ns, key, value in items])


def same_ranking(ours: list[SearchItem], theirs: list[SearchItem]) -> None:
    """The same items in the same order, with the same cosine similarities."""
    assert seen(ours) == seen(theirs)
    for a, b in zip(ours, theirs, strict=True):
        if b.score is None:
            assert a.score is None
        else:
            assert a.score == pytest.approx(b.score, abs=SCORE_TOLERANCE)


def test_gets_puts_overwrites_and_deletes_answer_as_in_memory(
    new_store: Callable[..., EngramStore], reference: Callable[[], InMemoryStore]
) -> None:
    ours, theirs = new_store(index={"fields": FIELDS}), reference()
    put_all((ours, theirs))
    for ns, key, _ in ITEMS:
        mine, ref = ours.get(ns, key), theirs.get(ns, key)
        assert mine is not None and ref is not None
        assert (mine.namespace, mine.key, mine.value) == (ref.namespace, ref.key, ref.value)
    for store in (ours, theirs):
        store.put(("users", "alice", "memories"), "coffee", {"text": "Alice now drinks tea"})
        store.put(("users", "bob", "memories"), "tea", {"text": "Bob prefers green tea", "n": 6})
        store.delete(("users", "bob", "memories"), "dog")
        store.delete(("users", "bob", "memories"), "never-there")
    for ns, key in [
        (("users", "alice", "memories"), "coffee"),
        (("users", "bob", "memories"), "tea"),
        (("users", "bob", "memories"), "dog"),
        (("users", "nobody"), "coffee"),
    ]:
        mine, ref = ours.get(ns, key), theirs.get(ns, key)
        assert (mine and seen([mine])) == (ref and seen([ref]))
    assert as_set(ours.search((), limit=100)) == as_set(theirs.search((), limit=100))


def test_the_value_round_trips_as_json(new_store: Callable[..., EngramStore]) -> None:
    store = new_store()
    value = {
        "text": 'ünïcode ✓ and "quotes"',
        "int": 2**53 + 1,
        "float": 0.1,
        "neg": -1.5,
        "bool": False,
        "none": None,
        "list": [1, "two", [3.0], {"four": 4}],
        "nested": {"a": {"b": {"c": [1, 2]}}},
        "empty": {},
        "key with spaces": "kept",
    }
    store.put(("round", "trip"), "k", value)
    item = store.get(("round", "trip"), "k")
    assert item is not None and item.value == value
    assert type(item.value["float"]) is float and type(item.value["int"]) is int


def test_searches_without_a_query_answer_as_in_memory(
    new_store: Callable[..., EngramStore], reference: Callable[[], InMemoryStore]
) -> None:
    ours, theirs = new_store(index={"fields": FIELDS}), reference()
    put_all((ours, theirs))
    ours.put(("users", "alice", "memories"), "bike", {"text": "Alice sold her bicycle", "n": 8})
    theirs.put(("users", "alice", "memories"), "bike", {"text": "Alice sold her bicycle", "n": 8})
    _compare_listings(ours, theirs)


def _compare_listings(ours: EngramStore, theirs: InMemoryStore) -> None:
    everywhere: list[dict[str, Any] | None] = [
        None,
        {"n": 3},
        {"n": {"$ne": 5}},
        {"meta": {"lang": "go"}},
        {"meta": {"lang": "go", "v": 2}},
        {"tags": ["code"]},
        {"missing": None},
        {"text": {"$eq": "A TypeScript guide"}},
    ]
    # InMemoryStore's ranges fail on items without the field: only where every item has it
    ranges: list[dict[str, Any] | None] = [
        {"n": {"$gt": 2}},
        {"n": {"$gte": 2, "$lt": 7}},
        {"n": {"$lte": 5.5}},
    ]
    cases = [(prefix, f) for prefix in [(), ("docs",), ("users", "carol")] for f in everywhere]
    cases += [
        (prefix, f) for prefix in [("users",), ("users", "alice")] for f in everywhere + ranges
    ]
    for prefix, conditions in cases:
        mine = ours.search(prefix, filter=conditions, limit=100)
        ref = theirs.search(prefix, filter=conditions, limit=100)
        assert as_set(mine) == as_set(ref), (prefix, conditions)
        # the latest put first, and pages that add up to the whole
        stamps = [item.updated_at for item in mine]
        assert stamps == sorted(stamps, reverse=True)
        pages = [ours.search(prefix, filter=conditions, limit=3, offset=o) for o in (0, 3, 6)]
        assert seen([i for page in pages for i in page]) == seen(mine)[:9]
        assert all(item.score is None for item in mine)


def test_query_searches_rank_as_in_memory(
    new_store: Callable[..., EngramStore], reference: Callable[[], InMemoryStore]
) -> None:
    ours, theirs = new_store(index={"fields": FIELDS}), reference()
    put_all((ours, theirs))
    cases: list[dict[str, Any]] = [
        {"namespace_prefix": (), "query": "what does alice drink?"},
        {"namespace_prefix": (), "query": "programming languages", "limit": 3},
        {"namespace_prefix": (), "query": "programming languages", "limit": 2, "offset": 2},
        {"namespace_prefix": ("users",), "query": "pets and animals", "limit": 4},
        {"namespace_prefix": ("users", "bob"), "query": "morning habits"},
        {"namespace_prefix": ("users",), "query": "drinks", "filter": {"n": {"$gte": 3}}},
        {"namespace_prefix": ("docs",), "query": "learning to code", "filter": {"meta": {"v": 2}}},
        {"namespace_prefix": ("nowhere",), "query": "anything"},
        {"namespace_prefix": (), "query": "code", "filter": {"tags": "code"}},  # a list is no str
        {"namespace_prefix": (), "query": "code", "filter": {"tags": ["code"]}},
        {"namespace_prefix": (), "query": "guide", "filter": {"meta": {"lang": "ts"}}},
    ]
    for case in cases:
        prefix = case.pop("namespace_prefix")
        same_ranking(ours.search(prefix, **case), theirs.search(prefix, **case))


def test_items_without_text_to_embed_follow_the_ranked_ones(
    new_store: Callable[..., EngramStore], reference: Callable[[], InMemoryStore]
) -> None:
    ours, theirs = new_store(index={"fields": FIELDS}), reference()
    put_all((ours, theirs), ITEMS[:2])
    for store in (ours, theirs):
        store.put(("users", "alice", "memories"), "raw", {"text": "not embedded"}, index=False)
        store.put(("users", "alice", "memories"), "bare", {"other": "no text field"})
    ranked = ours.search(("users",), query="coffee", limit=10)
    same_ranking(ranked[:2], theirs.search(("users",), query="coffee", limit=10)[:2])
    assert {item.key for item in ranked[2:]} == {"raw", "bare"}
    assert all(item.score is None for item in ranked[2:])
    assert [item.key for item in ours.search(("users",), query="coffee", limit=1)] == ["coffee"]


def test_namespace_listings_answer_as_in_memory(
    new_store: Callable[..., EngramStore], reference: Callable[[], InMemoryStore]
) -> None:
    ours, theirs = new_store(index={"fields": FIELDS}), reference()
    put_all((ours, theirs))
    cases: list[dict[str, Any]] = [
        {},
        {"prefix": ("users",)},
        {"prefix": ("users", "*", "memories")},
        {"suffix": ("memories",)},
        {"prefix": ("users",), "suffix": ("memories",)},
        {"suffix": ("*",), "max_depth": 1},
        {"max_depth": 2},
        {"prefix": ("docs",), "max_depth": 1},
        {"limit": 2},
        {"limit": 2, "offset": 2},
        {"offset": 10},
        {"prefix": ("nowhere",)},
    ]
    for case in cases:
        assert ours.list_namespaces(**case) == theirs.list_namespaces(**case), case
    # a namespace is listed while it holds items (InMemoryStore keeps emptied ones listed)
    ours.delete(("users", "alice", "prefs"), "theme")
    assert ours.list_namespaces(prefix=("users",)) == [
        ("users", "alice", "memories"),
        ("users", "bob", "memories"),
    ]


def test_the_async_store_answers_as_the_blocking_one(
    new_store: Callable[..., EngramStore], reference: Callable[[], InMemoryStore]
) -> None:
    ours, theirs = new_store(index={"fields": FIELDS}), reference()

    async def scenario(store: BaseStore) -> list[Any]:
        await store.abatch([PutOp(ns, key, value) for ns, key, value in ITEMS])
        await store.adelete(("users", "bob", "memories"), "dog")
        await store.aput(("docs",), "python", {"text": "Python for data science"})
        return [
            await store.aget(("docs",), "python"),
            await store.aget(("users", "bob", "memories"), "dog"),
            await store.asearch(("users",), query="a drink in the morning", limit=3),
            await store.asearch(("docs",), limit=10),
            await store.alist_namespaces(prefix=("users",), max_depth=2),
        ]

    async def in_its_loop() -> list[Any]:
        try:
            return await scenario(ours)
        finally:
            await ours.aclient.close()  # its connections belong to this event loop

    mine, ref = asyncio.run(in_its_loop()), asyncio.run(scenario(theirs))
    assert seen([mine[0]]) == seen([ref[0]])
    assert mine[1] is None and ref[1] is None
    same_ranking(mine[2], ref[2])
    assert as_set(mine[3]) == as_set(ref[3])
    assert mine[4] == ref[4]


def test_a_batch_reads_before_it_writes_and_its_last_put_of_a_key_wins(
    new_store: Callable[..., EngramStore], reference: Callable[[], InMemoryStore]
) -> None:
    ours, theirs = new_store(index={"fields": FIELDS}), reference()
    ns = ("batch",)
    answers = []
    for store in (ours, theirs):
        store.put(ns, "a", {"text": "first"})
        answers.append(
            store.batch(
                [
                    PutOp(ns, "a", {"text": "second"}),
                    GetOp(ns, "a"),
                    PutOp(ns, "b", {"text": "new"}),
                    SearchOp(ns, limit=10),
                    PutOp(ns, "b", {"text": "newer"}),
                    ListNamespacesOp(),
                    PutOp(ns, "c", {"text": "gone"}),
                    PutOp(ns, "c", None),
                ]
            )
        )
        assert store.get(ns, "a").value == {"text": "second"}  # type: ignore[union-attr]
        assert store.get(ns, "b").value == {"text": "newer"}  # type: ignore[union-attr]
        assert store.get(ns, "c") is None
    mine, ref = answers
    assert [r is None for r in mine] == [r is None for r in ref]
    assert seen([mine[1]]) == seen([ref[1]]) == [(ns, "a", {"text": "first"})]
    assert seen(mine[3]) == seen(ref[3])
    assert mine[5] == ref[5] == [ns]


def test_a_batch_with_a_bad_write_changes_nothing(
    new_store: Callable[..., EngramStore], admin: Engram
) -> None:
    store = new_store(index={"fields": FIELDS})
    ns = ("atomic",)
    store.put(ns, "kept", {"text": "as it was", "v": 1})
    store.put(ns, "edited", {"text": "the first text"})
    store.put(ns, "deleted", {"text": "still here"}, ttl=60)
    before = seen(store.search(ns, limit=100))
    good = [
        PutOp(ns, "kept", {"text": "as it was", "v": 2}),  # a new value, the same text
        PutOp(ns, "edited", {"text": "a second text"}),  # a new text, embedded again
        PutOp(ns, "deleted", None),
        PutOp(ns, "new", {"text": "x"}),
    ]
    refused_here = [
        PutOp(ns, "bad", {"langgraph:key": "reserved"}),
        PutOp(ns, "bad", {"x": float("nan")}),
        PutOp(ns, "bad", {"x": object()}),
        PutOp((), "bad", {"x": 1}),
        PutOp(("a.b",), "bad", {"x": 1}),
        PutOp(ns, "bad", {"x": 1}, ttl=-1),
    ]
    for bad in refused_here:
        with pytest.raises(ValueError):
            store.batch([*good, bad])
    # refused by Engram: metadata over its 16 KiB, content over its 32,000 characters
    for bad in (PutOp(ns, "bad", {"x": "y" * 20_000}), PutOp(ns, "bad", {"text": "z" * 40_000})):
        with pytest.raises(InvalidRequestError):
            store.batch([*good, bad])
    assert seen(store.search(ns, limit=100)) == before
    assert len(list(admin.list_memories(store.user_id))) == 3
    assert [i.key for i in store.search(ns, query="the first text", limit=1)] == ["edited"]
    store.batch(good)  # the same batch, without the bad write, is written whole
    assert {i.key: i.value for i in store.search(ns, limit=100)} == {
        "kept": {"text": "as it was", "v": 2},
        "edited": {"text": "a second text"},
        "new": {"text": "x"},
    }
    edited = store.search(ns, query="a second text", limit=1)
    assert [i.key for i in edited] == ["edited"] and edited[0].score == pytest.approx(1, abs=1e-3)


def test_ttl_expires_items_and_reads_refresh_it(new_store: Callable[..., EngramStore]) -> None:
    store = new_store(index={"fields": FIELDS})
    assert store.supports_ttl
    ns = ("ttl",)
    start = time.monotonic()
    store.batch(
        [
            PutOp(ns, "short", {"text": "gone soon"}, ttl=4 / 60),  # minutes: four seconds
            PutOp(ns, "read", {"text": "kept alive by reads"}, ttl=8 / 60),
            PutOp(ns, "forever", {"text": "no ttl"}),
        ]
    )
    while time.monotonic() - start < 14:  # each get refreshes the 8 s timer (by default)
        assert store.get(ns, "read") is not None
        time.sleep(2)
    assert store.get(ns, "short") is None
    assert {i.key for i in store.search(ns, limit=10)} == {"read", "forever"}
    assert {i.key for i in store.search(ns, query="gone soon", limit=10)} == {"read", "forever"}
    assert store.list_namespaces() == [ns]
    time.sleep(4)
    assert store.get(ns, "read", refresh_ttl=False) is not None  # this read refreshes nothing
    time.sleep(5)
    assert store.get(ns, "read") is None
    # an expired key is put again as a new item, whether the worker's sweep deleted it or not
    store.put(ns, "short", {"text": "back again"})
    assert store.get(ns, "short").value == {"text": "back again"}  # type: ignore[union-attr]


def test_a_default_ttl_and_reads_that_do_not_refresh(
    new_store: Callable[..., EngramStore],
) -> None:
    store = new_store(ttl={"default_ttl": 6 / 60, "refresh_on_read": False})
    ns = ("ttl", "default")
    start = time.monotonic()
    store.put(ns, "a", {"text": "expires"})
    store.put(ns, "b", {"text": "stays"}, ttl=None)
    assert store.get(ns, "a") is not None
    assert len(store.search(ns, query="expires")) == 2
    time.sleep(max(0, start + 3 - time.monotonic()))
    assert store.get(ns, "a") is not None  # not refreshed: had it been, it would outlive 8 s
    time.sleep(max(0, start + 8 - time.monotonic()))
    assert store.get(ns, "a") is None and store.get(ns, "b") is not None


def test_two_users_stores_never_see_each_others_items(
    new_store: Callable[..., EngramStore], api_url: str
) -> None:
    one, two = new_store(index={"fields": FIELDS}), new_store(index={"fields": FIELDS})
    ns = ("shared", "name")
    one.put(ns, "k", {"text": "one's secret"})
    two.put(ns, "k", {"text": "two's secret"})
    assert one.get(ns, "k").value == {"text": "one's secret"}  # type: ignore[union-attr]
    assert two.get(ns, "k").value == {"text": "two's secret"}  # type: ignore[union-attr]
    assert [i.value for i in one.search((), query="secret")] == [{"text": "one's secret"}]
    assert [i.value for i in two.search(())] == [{"text": "two's secret"}]
    one.delete(ns, "k")
    assert two.get(ns, "k") is not None and two.list_namespaces() == [ns]
    trespasser = EngramStore(two.user_id, url=api_url, api_key=_key_of(one))
    with pytest.raises(PermissionDeniedError):
        trespasser.get(ns, "k")
    trespasser.close()


def _key_of(store: EngramStore) -> str:
    return str(store.client._http.headers["Authorization"]).removeprefix("Bearer ")


def test_other_memories_of_the_user_are_not_items(
    new_store: Callable[..., EngramStore], admin: Engram
) -> None:
    store = new_store(index={"fields": FIELDS})
    admin.add_memories(store.user_id, ["Alice drinks her coffee black."], wait=True)
    store.put(("mine",), "k", {"text": "Alice drinks coffee"})
    assert store.list_namespaces() == [("mine",)]
    assert [i.key for i in store.search((), limit=10)] == ["k"]
    assert [i.key for i in store.search((), query="coffee", limit=10)] == ["k"]


def test_an_admin_key_acts_for_the_user_it_names(api_url: str, admin: Engram) -> None:
    user_id = f"lg-{uuid.uuid4().hex[:12]}"
    with EngramStore(user_id, url=api_url, api_key=ADMIN_KEY) as store:
        store.put(("admin",), "k", {"text": "written for the user"})
        assert [m.metadata["langgraph:key"] for m in admin.list_memories(user_id)] == ["k"]


def test_the_readme_example_prints_what_the_readme_says(
    api_url: str, admin: Engram, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code, printed = re.findall(r"```python\n(.*?)```\n\n```\n(.*?)```", readme, re.DOTALL)[0]
    user_id = f"lg-{uuid.uuid4().hex[:12]}"
    key = admin.create_key(user_id).key
    code = re.sub(r'EngramStore\(\s*"alice"', f"EngramStore({user_id!r}", code)
    code = code.replace("http://127.0.0.1:8000", api_url).replace("egm_...", key)
    exec(code, {})  # as a reader would paste it, with their URL, user and key
    assert capsys.readouterr().out == printed
