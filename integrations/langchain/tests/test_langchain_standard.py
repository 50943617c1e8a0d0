"""LangChain's standard suites (langchain-tests) against a real running Engram:
``EngramVectorStore`` with client-side embeddings in an external space, and
``EngramRetriever`` over texts Engram embedded itself, and over client-side vectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from langchain_engram import EngramRetriever, EngramVectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

TEXTS = [
    "Alice drinks her coffee black, without sugar.",
    "Alice's espresso machine is a 1998 Gaggia Classic.",
    "Bob takes his tea with milk and two sugars.",
    "The team meets on Tuesdays at ten in the small room.",
    "Alice is allergic to peanuts.",
    "The staging server is called orca-7.",
]


class TestEngramVectorStore(VectorStoreIntegrationTests):
    """Each test gets a fresh user: an empty store."""

    @pytest.fixture
    async def vectorstore(
        self,
        engram_url: str,
        new_user: Callable[[], tuple[str, str]],
        external_space: str,
    ) -> AsyncIterator[EngramVectorStore]:
        user_id, key = new_user()
        store = EngramVectorStore(
            user_id,
            url=engram_url,
            api_key=key,
            embedding=self.get_embeddings(),
            space=external_space,
        )
        yield store
        await store.aclose()


class TestEngramRetriever(RetrieversIntegrationTests):
    """Engram embeds the texts and the queries (hybrid search, the retriever's default)."""

    @pytest.fixture(scope="class")
    def stored(
        self, engram_url: str, new_user: Callable[[], tuple[str, str]]
    ) -> Iterator[dict[str, Any]]:
        user_id, key = new_user()
        with EngramVectorStore(user_id, url=engram_url, api_key=key) as store:
            store.add_texts(TEXTS)
        yield {"user_id": user_id, "url": engram_url, "api_key": key}

    @pytest.fixture(autouse=True)
    def _params(self, stored: dict[str, Any]) -> None:
        self.params = stored

    @property
    def retriever_constructor(self) -> type[EngramRetriever]:
        return EngramRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return self.params

    @property
    def retriever_query_example(self) -> str:
        return "how does alice take her coffee?"


class TestEngramRetrieverClientSide(TestEngramRetriever):
    """Vectors computed here and sent into the external space; hybrid sends the text too."""

    @pytest.fixture(scope="class")
    def stored(
        self, engram_url: str, new_user: Callable[[], tuple[str, str]], external_space: str
    ) -> Iterator[dict[str, Any]]:
        user_id, key = new_user()
        embedding = self.embedding()
        with EngramVectorStore(
            user_id, url=engram_url, api_key=key, embedding=embedding, space=external_space
        ) as store:
            store.add_texts(TEXTS)
        yield {
            "user_id": user_id,
            "url": engram_url,
            "api_key": key,
            "embedding": embedding,
            "space": external_space,
        }

    @staticmethod
    def embedding() -> Any:
        return VectorStoreIntegrationTests.get_embeddings()
