"""``EngramVectorStore`` and ``EngramRetriever`` with Engram embedding on the server (no
``embedding`` given), against a real running API and worker: ids round trip, metadata
filters, scores, upsert, delete, the async twins, retrievers, and errors a user can read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
from engram_client import AsyncEngram, AuthenticationError, Engram, InvalidRequestError
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStoreRetriever
from langchain_engram import EngramRetriever, EngramVectorStore
from langchain_engram._ids import ID_KEY, NAMESPACE
from langchain_engram.vectorstores import _items

NewUser = Callable[[], tuple[str, str]]

FACTS = {
    "coffee": ("Alice drinks her coffee black, without sugar.", {"topic": "drinks", "year": 2021}),
    "tea": ("Bob takes his tea with milk and two sugars.", {"topic": "drinks", "year": 2019}),
    "meeting": ("The team meets on Tuesdays at ten.", {"topic": "work", "year": 2023}),
    "server": ("The staging server is called orca-7.", {"topic": "work", "year": 2024}),
    "allergy": ("Alice is allergic to peanuts.", {"topic": "health", "year": 2020}),
}


@pytest.fixture
def store(engram_url: str, new_user: NewUser) -> Iterator[EngramVectorStore]:
    user_id, key = new_user()
    with EngramVectorStore(user_id, url=engram_url, api_key=key) as opened:
        yield opened


@pytest.fixture
def facts(store: EngramVectorStore) -> EngramVectorStore:
    """The store holding FACTS, each under its name as id."""
    names = list(FACTS)
    texts = [FACTS[name][0] for name in names]
    store.add_texts(texts, [FACTS[name][1] for name in names], ids=names)
    return store


def test_texts_are_embedded_by_the_server_and_found_by_meaning(facts: EngramVectorStore) -> None:
    found = facts.similarity_search("what does Alice like to drink?", k=2)
    assert found[0] == Document(
        id="coffee", page_content=FACTS["coffee"][0], metadata=FACTS["coffee"][1]
    )
    assert len(found) == 2


def test_scores_are_the_cosine_similarities_engram_computes(
    facts: EngramVectorStore, engram_url: str
) -> None:
    scored = facts.similarity_search_with_score("who has a food allergy?", k=5)
    assert scored[0][0].id == "allergy"
    scores = [score for _, score in scored]
    assert scores == sorted(scores, reverse=True)
    assert all(-1 <= score <= 1 for score in scores)
    raw = facts.client.search(facts.user_id, "who has a food allergy?", k=5, mode="vector")
    assert [hit.similarity for hit in raw.results] == pytest.approx(scores)


def test_relevance_scores_are_the_similarities_within_zero_and_one(
    facts: EngramVectorStore,
) -> None:
    scored = facts.similarity_search_with_relevance_scores("peanut allergy", k=5)
    plain = facts.similarity_search_with_score("peanut allergy", k=5)
    assert [score for _, score in scored] == pytest.approx([max(0, s) for _, s in plain])
    kept = facts.similarity_search_with_relevance_scores(
        "peanut allergy", k=5, score_threshold=scored[0][1] - 1e-6
    )
    assert [document.id for document, _ in kept] == ["allergy"]


def test_search_by_vector_takes_a_vector_of_the_memory_space(facts: EngramVectorStore) -> None:
    # the stored vector of "server", as Engram's export gives it: its nearest item is itself
    lines = map(json.loads, facts.client.export_user(facts.user_id).decode().splitlines())
    vectors = {line["item_id"]: line["embedding"] for line in lines if line["type"] == "vector"}
    own = vectors[str(uuid.uuid5(NAMESPACE, "server"))]
    vector = json.loads(own) if isinstance(own, str) else own
    assert len(vector) == 384
    assert [d.id for d in facts.similarity_search_by_vector(vector, k=1)] == ["server"]
    assert [d.id for d in facts.max_marginal_relevance_search_by_vector(vector, k=1)] == ["server"]


def test_metadata_filters_take_engram_operators(facts: EngramVectorStore) -> None:
    def ids(**options: object) -> set[str | None]:
        return {document.id for document in facts.similarity_search("anything", k=5, **options)}

    assert ids(filter={"topic": "drinks"}) == {"coffee", "tea"}
    assert ids(filter={"year": {"$gte": 2023}}) == {"meeting", "server"}
    assert ids(filter={"topic": {"$in": ["health", "work"]}}) == {"allergy", "meeting", "server"}
    assert ids(filter={"$and": [{"topic": "drinks"}, {"year": {"$lt": 2020}}]}) == {"tea"}
    with pytest.raises(InvalidRequestError, match="filter"):
        facts.similarity_search("anything", filter={"year": {"$near": 1}})


def test_a_misspelt_search_option_is_refused_not_ignored(facts: EngramVectorStore) -> None:
    with pytest.raises(TypeError, match="filters"):
        facts.similarity_search("coffee", filters={"topic": "work"})


def test_ids_round_trip_as_given(store: EngramVectorStore) -> None:
    canonical = str(uuid.uuid4())
    upper = str(uuid.uuid4()).upper()
    ids = ["doc-1", canonical, upper, "∑ ünïcode / id"]
    texts = ["first text", "second text", "third text", "fourth text"]
    assert store.add_texts(texts, ids=ids) == ids
    assert [d.id for d in store.get_by_ids(ids)] == ids
    assert {d.id for d in store.similarity_search("text", k=4)} == set(ids)
    # in Engram: a canonical UUID is the memory's id; any other string is uuid5 of it, kept
    stored = {m.id: m for m in store.client.list_memories(store.user_id)}
    assert stored[uuid.UUID(canonical)].metadata == {}
    assert stored[uuid.uuid5(NAMESPACE, "doc-1")].metadata == {ID_KEY: "doc-1"}
    assert stored[uuid.uuid5(NAMESPACE, upper)].metadata == {ID_KEY: upper}
    assert all(ID_KEY not in d.metadata for d in store.get_by_ids(ids))


def test_new_ids_are_uuids_and_documents_keep_theirs(store: EngramVectorStore) -> None:
    ids = store.add_documents(
        [Document(page_content="no id here"), Document(id="mine", page_content="an id")]
    )
    assert ids[1] == "mine"
    assert str(uuid.UUID(ids[0])) == ids[0]
    assert {d.id for d in store.get_by_ids(ids)} == set(ids)


def test_adding_an_id_again_replaces_its_text_and_metadata(store: EngramVectorStore) -> None:
    store.add_texts(["Alice lives in Paris."], [{"v": 1}], ids=["home"])
    store.add_texts(["Alice lives in Paris."], [{"v": 2}], ids=["home"])  # same text
    assert store.get_by_ids(["home"]) == [
        Document(id="home", page_content="Alice lives in Paris.", metadata={"v": 2})
    ]
    store.add_texts(["Alice moved to Lyon."], [{"v": 3}], ids=["home"])  # other text
    assert store.get_by_ids(["home"]) == [
        Document(id="home", page_content="Alice moved to Lyon.", metadata={"v": 3})
    ]
    assert len(list(store.client.list_memories(store.user_id))) == 1
    assert store.similarity_search("where does Alice live?", k=5)[0].page_content == (
        "Alice moved to Lyon."
    )


def test_an_id_given_twice_in_one_call_is_written_once_as_its_last_text(
    store: EngramVectorStore,
) -> None:
    store.add_texts(["old words", "new words"], ids=["same", "same"])
    assert [d.page_content for d in store.get_by_ids(["same"])] == ["new words"]


def test_large_adds_go_in_batches_of_a_number_and_a_size(
    engram_url: str, new_user: NewUser
) -> None:
    user_id, key = new_user()
    texts = [f"note number {n}" for n in range(5)] + ["a long note " + "word " * 500]
    with EngramVectorStore(user_id, url=engram_url, api_key=key, batch_size=2) as store:
        ids = store.add_texts(texts)
        assert [d.page_content for d in store.get_by_ids(ids)] == texts
    with EngramVectorStore(user_id, url=engram_url, api_key=key, batch_bytes=1000) as store:
        batches = list(store._batches(_items(texts, None, ids, None)))
        assert [len(batch) for batch in batches] == [5, 1]  # the long note goes alone
        more = store.add_texts([f"{text} again" for text in texts])
        assert len(store.get_by_ids(more)) == 6


def test_delete_removes_from_search_and_ignores_unknown_ids(facts: EngramVectorStore) -> None:
    assert facts.delete(["coffee", "tea", "never-stored"]) is True
    assert facts.get_by_ids(["coffee", "tea"]) == []
    assert {d.id for d in facts.similarity_search("drink", k=5)} == {
        "meeting",
        "server",
        "allergy",
    }
    with pytest.raises(ValueError, match="erase_user"):
        facts.delete()


def test_from_texts_makes_a_store_holding_them(engram_url: str, new_user: NewUser) -> None:
    user_id, key = new_user()
    store = EngramVectorStore.from_texts(
        ["Carol plays the cello."],
        metadatas=[{"who": "carol"}],
        ids=["c"],
        user_id=user_id,
        url=engram_url,
        api_key=key,
    )
    with store:
        assert store.similarity_search("music", k=1) == [
            Document(id="c", page_content="Carol plays the cello.", metadata={"who": "carol"})
        ]


async def test_the_async_methods_use_the_async_client(engram_url: str, new_user: NewUser) -> None:
    user_id, key = new_user()
    async with AsyncEngram(engram_url, key) as client:
        store = EngramVectorStore(user_id, async_client=client)
        names = list(FACTS)
        await store.aadd_texts(
            [FACTS[n][0] for n in names], [FACTS[n][1] for n in names], ids=names
        )
        found = await store.asimilarity_search("what does Alice drink?", k=1)
        assert [d.id for d in found] == ["coffee"]
        scored = await store.asimilarity_search_with_score(
            "peanuts", k=1, filter={"topic": "health"}
        )
        assert scored[0][0].id == "allergy" and 0 < scored[0][1] <= 1
        assert [d.id for d in await store.aget_by_ids(["tea", "nope", "coffee"])] == [
            "tea",
            "coffee",
        ]
        await store.adelete(["tea", "nope"])
        assert await store.aget_by_ids(["tea"]) == []
        diverse = await store.amax_marginal_relevance_search("Alice", k=3, lambda_mult=0.3)
        assert len(diverse) == 3
        with pytest.raises(ValueError, match="only an async_client"):
            store.similarity_search("coffee")


async def test_afrom_texts(engram_url: str, new_user: NewUser) -> None:
    user_id, key = new_user()
    store = await EngramVectorStore.afrom_texts(
        ["Dan runs marathons."], user_id=user_id, url=engram_url, api_key=key
    )
    async with store:
        assert [d.page_content for d in await store.asimilarity_search("sport", k=1)] == [
            "Dan runs marathons."
        ]


def test_a_store_given_only_a_blocking_client_says_so_for_async(
    engram_url: str, new_user: NewUser
) -> None:
    user_id, key = new_user()
    with Engram(engram_url, key) as client:
        store = EngramVectorStore(user_id, client=client)
        with pytest.raises(ValueError, match="async_client"):
            store.async_client  # noqa: B018


def test_max_marginal_relevance_is_engram_diversity(facts: EngramVectorStore) -> None:
    plain = facts.max_marginal_relevance_search("Alice", k=3, lambda_mult=1.0)
    assert [d.id for d in plain] == [d.id for d in facts.similarity_search("Alice", k=3)]
    assert len(facts.max_marginal_relevance_search("Alice", k=3, lambda_mult=0.0)) == 3


def test_as_retriever_is_langchains_retriever_over_the_store(facts: EngramVectorStore) -> None:
    retriever = facts.as_retriever(search_kwargs={"k": 2, "filter": {"topic": "work"}})
    assert isinstance(retriever, VectorStoreRetriever)
    assert {d.id for d in retriever.invoke("when do we meet?")} == {"meeting", "server"}


def test_engram_retriever_is_hybrid_and_finds_exact_words(facts: EngramVectorStore) -> None:
    retriever = facts.as_engram_retriever(k=1)
    assert retriever.mode == "hybrid"
    assert [d.id for d in retriever.invoke("orca-7")] == ["server"]
    assert [d.id for d in retriever.invoke("drinks", filter={"year": 2019})] == ["tea"]
    assert len(retriever.invoke("Alice", k=3)) == 3


def test_engram_retriever_threshold_keeps_only_similar_hits(facts: EngramVectorStore) -> None:
    scored = facts.similarity_search_with_score("peanut allergy", k=2)
    cut = (scored[0][1] + scored[1][1]) / 2
    retriever = facts.as_engram_retriever(k=5, threshold=cut, mode="vector")
    assert [d.id for d in retriever.invoke("peanut allergy")] == ["allergy"]


def test_a_bad_key_is_an_authentication_error(engram_url: str) -> None:
    key = "egm_0123456789abcdef_" + "x" * 43
    with (
        EngramVectorStore("someone", url=engram_url, api_key=key) as store,
        pytest.raises(AuthenticationError) as raised,
    ):
        store.add_texts(["anything"])
    assert raised.value.status == 401
    assert "401 unauthenticated" in str(raised.value)


def test_a_blank_text_is_refused_with_the_item_named(store: EngramVectorStore) -> None:
    with pytest.raises(InvalidRequestError, match=r"memories\[1\]"):
        store.add_texts(["fine", "   "])
    assert list(store.client.list_memories(store.user_id)) == []


def test_client_side_embeddings_need_an_external_space() -> None:
    with pytest.raises(ValueError, match="ENGRAM_EXTERNAL_SPACES"):
        EngramVectorStore("u", embedding=DeterministicFakeEmbedding(size=6))
    with pytest.raises(ValueError, match="ENGRAM_EXTERNAL_SPACES"):
        EngramRetriever(user_id="u", embedding=DeterministicFakeEmbedding(size=6))
