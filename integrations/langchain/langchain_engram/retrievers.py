"""``EngramRetriever``: Engram's search as a LangChain retriever, hybrid by default."""

from __future__ import annotations

from typing import Any

from engram_client import AsyncEngram, Engram
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from langchain_engram._search import Mode, options, scored_documents, search_args


class EngramRetriever(BaseRetriever):
    """The ``k`` memories of one Engram user that best answer a query.

    ``mode`` is ``"hybrid"`` by default: Engram fuses the vector ranking with a BM25 ranking
    of the words, which finds names and codes that embeddings blur. ``filter`` matches
    metadata as Engram's search takes it; ``threshold`` keeps hits whose cosine similarity
    is at least its value. ``k``, ``filter``, ``mode`` and ``threshold`` may also be given
    to ``invoke`` for one call.

    Clients, ``url``/``api_key``, ``embedding`` and ``space`` are as for
    ``EngramVectorStore`` (``EngramVectorStore.as_engram_retriever`` shares a store's).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    user_id: str
    client: Engram | None = None
    async_client: AsyncEngram | None = None
    url: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    embedding: Embeddings | None = None
    space: str | None = None
    k: int = 4
    filter: dict[str, Any] | None = None
    mode: Mode = "hybrid"
    threshold: float | None = None
    timeout: float = 60.0

    def model_post_init(self, context: Any, /) -> None:
        if self.embedding is not None and self.space is None:
            raise ValueError(
                "client-side embeddings go to an external space: name it with space=..., "
                "as the operator declared it in ENGRAM_EXTERNAL_SPACES"
            )
        if self.client is None and self.async_client is None:
            self.client = Engram(self.url, self.api_key, timeout=self.timeout)
            self.async_client = AsyncEngram(self.url, self.api_key, timeout=self.timeout)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self.client is None:
            raise ValueError("this retriever was given only an async_client: use ainvoke")
        vector = self.embedding.embed_query(query) if self.embedding else None
        results = self.client.search(self.user_id, **self._args(query, vector, kwargs))
        return [document for document, _ in scored_documents(results)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self.async_client is None:
            raise ValueError("this retriever was given only a client: pass async_client= too")
        vector = await self.embedding.aembed_query(query) if self.embedding else None
        results = await self.async_client.search(self.user_id, **self._args(query, vector, kwargs))
        return [document for document, _ in scored_documents(results)]

    def _args(
        self, query: str, vector: list[float] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        k = kwargs.pop("k", self.k)
        chosen: dict[str, Any] = {"filter": self.filter, "mode": self.mode}
        chosen["threshold"] = self.threshold
        chosen |= options(kwargs)
        return search_args(query, vector, k=k, space=self.space, **chosen)
