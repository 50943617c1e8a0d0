"""Sequences of operations made up by hypothesis, run on ``EngramStore`` (a real `engram api`
and worker) and on LangGraph's ``InMemoryStore`` with the same embeddings, every answer
compared: puts (indexed or not), overwrites, deletes, gets, searches with and without a
query, filter, limit and offset, namespace listings with prefixes, suffixes and depths."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator

import pytest
from engram_client import Engram
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore
from langgraph_engram import EngramStore
from support.processes import ADMIN_KEY

from models.embedding.provider import Embedder

pytestmark = pytest.mark.usefixtures("worker")

SCORE_TOLERANCE = 2e-3
SENTENCES = [
    "Alice drinks her coffee black",
    "Bob prefers green tea in the morning",
    "the cat sleeps on the warm windowsill",
    "a tutorial on Python generators",
    "Go concurrency with channels",
    "hiking in the Alps in September",
]
LABELS = ["a", "b", "c"]
KEYS = ["k1", "k2", "k3", "k4"]

labels = st.lists(st.sampled_from(LABELS), min_size=0, max_size=2).map(tuple)
values = st.fixed_dictionaries(
    {"text": st.sampled_from(SENTENCES), "n": st.integers(0, 4)},
    optional={"tag": st.sampled_from(["x", "y"])},
)
filters = st.one_of(
    st.none(),
    st.builds(lambda n: {"n": n}, st.integers(0, 4)),
    st.builds(lambda n: {"n": {"$gte": n}}, st.integers(0, 4)),
    st.builds(lambda n: {"n": {"$ne": n}}, st.integers(0, 4)),
    st.builds(lambda t: {"tag": t}, st.sampled_from(["x", "y"])),
)
windows = st.tuples(st.integers(0, 6), st.integers(0, 4))  # limit, offset


class Reference(InMemoryStore):
    """LangGraph's in-memory store, listing only namespaces that hold items (as the stores
    on a database do; the dict behind InMemoryStore keeps emptied ones, and makes one for
    every namespace read, even earlier in the same batch)."""

    def _handle_list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        for namespace in [ns for ns, items in self._data.items() if not items]:
            del self._data[namespace]
        return super()._handle_list_namespaces(op)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        results = super().batch(ops)
        # InMemoryStore keeps the vector of an item put again with index=False
        for op in ops:
            if isinstance(op, PutOp) and op.index is False:
                self._vectors[op.namespace].pop(op.key, None)
        return results

    def _insertinmem_store(
        self,
        to_embed: dict[str, list[tuple[tuple[str, ...], str, str]]],
        embeddings: list[list[float]],
    ) -> None:
        # InMemoryStore embeds each distinct text once, then wants a vector for every item
        # field holding it: two puts of one text in a batch would fail there
        each = [
            vector
            for vector, fields in zip(embeddings, to_embed.values(), strict=True)
            for _ in fields
        ]
        super()._insertinmem_store(to_embed, each)


def operations(root: str) -> st.SearchStrategy[list[Op]]:
    def under(suffix: tuple[str, ...]) -> tuple[str, ...]:
        return (root, *suffix)

    put = st.builds(
        lambda ns, key, value, indexed: PutOp(
            under(ns), key, value, index=None if indexed else False
        ),
        labels,
        st.sampled_from(KEYS),
        values,
        st.booleans() | st.just(True),
    )
    delete = st.builds(lambda ns, key: PutOp(under(ns), key, None), labels, st.sampled_from(KEYS))
    get = st.builds(lambda ns, key: GetOp(under(ns), key), labels, st.sampled_from(KEYS))
    listing = st.builds(lambda ns, f: SearchOp(under(ns), filter=f, limit=100), labels, filters)
    page = st.builds(
        lambda ns, f, w: SearchOp(under(ns), filter=f, limit=w[0], offset=w[1]),
        labels,
        filters,
        windows,
    )
    query = st.builds(
        lambda ns, q, f, w: SearchOp(under(ns), query=q, filter=f, limit=w[0] + 1, offset=w[1]),
        labels,
        st.sampled_from(SENTENCES),
        filters,
        windows,
    )
    namespaces = st.builds(
        lambda prefix, suffix, depth, w: ListNamespacesOp(
            match_conditions=tuple(
                [MatchCondition("prefix", under(prefix))]
                + ([MatchCondition("suffix", suffix)] if suffix else [])
            ),
            max_depth=depth,
            limit=w[0] + 1,
            offset=w[1],
        ),
        st.lists(st.sampled_from([*LABELS, "*"]), max_size=2).map(tuple),
        st.lists(st.sampled_from([*LABELS, "*"]), max_size=1).map(tuple),
        st.none() | st.integers(1, 3),
        windows,
    )
    one = st.one_of(put, put, delete, get, listing, page, query, namespaces)
    return st.lists(st.lists(one, min_size=1, max_size=3), min_size=1, max_size=12).map(
        lambda batches: [op for batch in batches for op in batch]
    )


@pytest.fixture(scope="module")
def store(api_url: str) -> Iterator[EngramStore]:
    user_id = f"lg-{uuid.uuid4().hex[:12]}"
    with Engram(api_url, ADMIN_KEY) as admin:
        key = admin.create_key(user_id).key
    with EngramStore(user_id, url=api_url, api_key=key, index={"fields": ["text"]}) as store:
        yield store


def test_operation_sequences_answer_as_in_memory(store: EngramStore, embedder: Embedder) -> None:
    def embed(texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in embedder.encode(texts)]  # type: ignore[attr-defined]

    @settings(
        max_examples=int(os.environ.get("ENGRAM_FUZZ_EXAMPLES", "8")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        root = f"r{uuid.uuid4().hex[:10]}"  # each example in a namespace of its own
        reference = Reference(index={"dims": 384, "embed": embed, "fields": ["text"]})
        ops = data.draw(operations(root))
        # a batch of one operation at a time, and sometimes several together
        step = data.draw(st.sampled_from([1, 2, 3]))
        for start in range(0, len(ops), step):
            batch = ops[start : start + step]
            for op, mine, ref in zip(
                batch, store.batch(batch), reference.batch(batch), strict=True
            ):
                same_answer(op, mine, ref, reference)

    run()


def same_answer(op: Op, mine: Result, ref: Result, reference: InMemoryStore) -> None:
    if isinstance(op, PutOp):
        assert mine is None and ref is None
    elif isinstance(op, GetOp):
        assert described(mine) == described(ref), op
    elif isinstance(op, ListNamespacesOp):
        assert mine == ref, op
    elif isinstance(op, SearchOp) and op.query:
        same_ranking(op, mine, ref)  # type: ignore[arg-type]
        unranked = [i for i in mine if i.score is None]  # type: ignore[union-attr]
        if unranked:  # what InMemoryStore would list for the prefix and filter
            listed = reference.search(op.namespace_prefix, filter=op.filter, limit=1000)
            assert {described(i) for i in unranked} <= {described(i) for i in listed}, op
    else:
        assert isinstance(mine, list) and isinstance(ref, list)
        if op.offset == 0 and op.limit >= 100:
            assert {described(i) for i in mine} == {described(i) for i in ref}, op
        assert len(mine) == len(ref), op  # the order of unranked items is each store's own


def described(item: Item | None) -> str | None:
    if item is None:
        return None
    return json.dumps([item.namespace, item.key, item.value], sort_keys=True)


def same_ranking(op: SearchOp, mine: list[SearchItem], ref: list[SearchItem]) -> None:
    """The same items ranked the same, but for items whose scores tie within the tolerance
    (float32 against float64 may order those either way); items without text to embed
    follow in each store's own order."""
    assert len(mine) == len(ref), op
    for a, b in zip(mine, ref, strict=True):
        if b.score is None:
            assert a.score is None, op
        else:
            assert a.score == pytest.approx(b.score, abs=SCORE_TOLERANCE), op
    scores = {described(i): i.score for i in ref}
    for a, b in zip(mine, ref, strict=True):
        if described(a) != described(b) and b.score is not None:
            score = scores.get(described(a), ref[-1].score)
            assert a.score is not None and score is not None, op
            assert abs(score - a.score) <= SCORE_TOLERANCE, op
