"""``EngramVectorStore``: a LangChain vector store over one Engram user's memories."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Self

import msgspec
from engram_client import AsyncEngram, ConflictError, Engram, MemoryIn, NotFoundError
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from langchain_engram._ids import memory_id, stored_metadata
from langchain_engram._search import (
    document_of,
    options,
    scored_documents,
    search_args,
)

if TYPE_CHECKING:
    from langchain_engram.retrievers import EngramRetriever


class EngramVectorStore(VectorStore):
    """The memories of one Engram user as a LangChain vector store.

    Give it clients (``client`` for the methods, ``async_client`` for their ``a*`` twins),
    or neither and ``url`` and ``api_key`` (default: ``$ENGRAM_URL``, ``$ENGRAM_API_KEY``),
    from which it makes both and closes them in ``close``/``aclose``.

    Without ``embedding``, Engram embeds texts and queries itself, in ``space`` (default:
    its memory space); writes wait until the texts are embedded (``wait``). With
    ``embedding``, vectors are computed here and sent into ``space``, an external space the
    operator declared (``ENGRAM_EXTERNAL_SPACES``) with the embedding's length.

    Ids are any strings: a UUID in its canonical form is the memory's id; any other string
    names the memory ``uuid5`` of it, and is kept in its metadata under ``langchain_id`` so
    that every answer carries the caller's id (that key never shows in a Document).
    Adding an id again replaces the memory: the same text keeps it and takes the new
    metadata; another text deletes it and writes the new one (two steps, not atomic).
    Scores are the cosine similarity of each hit to the query (-1 to 1).
    """

    def __init__(
        self,
        user_id: str,
        *,
        client: Engram | None = None,
        async_client: AsyncEngram | None = None,
        url: str | None = None,
        api_key: str | None = None,
        embedding: Embeddings | None = None,
        space: str | None = None,
        wait: bool = True,
        batch_size: int = 500,
        batch_bytes: int = 4 * 1024 * 1024,
        timeout: float = 60.0,
    ) -> None:
        if embedding is not None and space is None:
            raise ValueError(
                "client-side embeddings go to an external space: name it with space=..., "
                "as the operator declared it in ENGRAM_EXTERNAL_SPACES"
            )
        given = client is not None or async_client is not None
        if given and (url is not None or api_key is not None):
            raise ValueError("give either clients or url and api_key, not both")
        self.user_id = user_id
        self.embedding = embedding
        self.space = space
        self.wait = wait
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self._client = client if given else Engram(url, api_key, timeout=timeout)
        self._async_client = async_client if given else AsyncEngram(url, api_key, timeout=timeout)
        self._owns_clients = not given

    # --- clients ------------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings | None:
        """The client-side embeddings, or None when Engram embeds."""
        return self.embedding

    @property
    def client(self) -> Engram:
        """The blocking client the methods use."""
        if self._client is None:
            raise ValueError("this store was given only an async_client: use the a* methods")
        return self._client

    @property
    def async_client(self) -> AsyncEngram:
        """The asyncio client the ``a*`` methods use."""
        if self._async_client is None:
            raise ValueError("this store was given only a client: pass async_client= too")
        return self._async_client

    def close(self) -> None:
        """Close the blocking client, if the store made it."""
        if self._owns_clients and self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close both clients, if the store made them."""
        self.close()
        if self._owns_clients and self._async_client is not None:
            await self._async_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- writing ------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Add (or replace, by id) texts; their ids, in order (new ones are UUIDs)."""
        contents = list(texts)
        chosen = _ids_for(contents, metadatas, ids, kwargs)
        vectors = self.embedding.embed_documents(contents) if self.embedding else None
        for batch in self._batches(_items(contents, metadatas, chosen, vectors)):
            self._write(batch)
        return chosen

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """``add_texts`` over the asyncio client."""
        contents = list(texts)
        chosen = _ids_for(contents, metadatas, ids, kwargs)
        vectors = await self.embedding.aembed_documents(contents) if self.embedding else None
        for batch in self._batches(_items(contents, metadatas, chosen, vectors)):
            await self._awrite(batch)
        return chosen

    def _batches(self, items: list[MemoryIn]) -> Iterator[list[MemoryIn]]:
        """The items in requests of at most ``batch_size`` items and about ``batch_bytes``
        of JSON (Engram refuses bodies over ``ENGRAM_MAX_BODY_BYTES``, 10 MiB by default;
        one item over the size goes alone)."""
        batch: list[MemoryIn] = []
        size = 0
        for item in items:
            item_size = len(msgspec.json.encode(item))
            if batch and (len(batch) == self.batch_size or size + item_size > self.batch_bytes):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += item_size
        if batch:
            yield batch

    def _write(self, batch: list[MemoryIn]) -> None:
        client, user = self.client, self.user_id
        try:
            client.add_memories(user, batch, wait=self.wait, space=self.space)
        except ConflictError:  # an id known with other content: replace that memory
            for item_id, content in _chosen(batch):
                try:
                    stored = client.get_memory(user, item_id)
                except NotFoundError:
                    continue
                if stored.content != content:
                    client.delete_memory(user, item_id)
            client.add_memories(user, batch, wait=self.wait, space=self.space)

    async def _awrite(self, batch: list[MemoryIn]) -> None:
        client, user = self.async_client, self.user_id
        try:
            await client.add_memories(user, batch, wait=self.wait, space=self.space)
        except ConflictError:  # an id known with other content: replace that memory
            for item_id, content in _chosen(batch):
                try:
                    stored = await client.get_memory(user, item_id)
                except NotFoundError:
                    continue
                if stored.content != content:
                    await client.delete_memory(user, item_id)
            await client.add_memories(user, batch, wait=self.wait, space=self.space)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete the memories of these ids (ids not stored are no error); True."""
        for target in _deletable(ids, kwargs):
            with contextlib.suppress(NotFoundError):
                self.client.delete_memory(self.user_id, target)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """``delete`` over the asyncio client."""
        for target in _deletable(ids, kwargs):
            with contextlib.suppress(NotFoundError):
                await self.async_client.delete_memory(self.user_id, target)
        return True

    # --- reading ------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored Documents of these ids, in order; ids not stored are left out."""
        found = []
        for langchain_id in ids:
            try:
                found.append(self.client.get_memory(self.user_id, memory_id(langchain_id)))
            except NotFoundError:
                continue
        return [document_of(memory) for memory in found]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """``get_by_ids`` over the asyncio client (the reads run concurrently)."""

        async def read(langchain_id: str) -> Document | None:
            try:
                memory = await self.async_client.get_memory(self.user_id, memory_id(langchain_id))
            except NotFoundError:
                return None
            return document_of(memory)

        found = await asyncio.gather(*(read(langchain_id) for langchain_id in ids))
        return [document for document in found if document is not None]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` memories nearest to ``query`` (options: ``filter`` on metadata, as
        Engram's search takes it; ``threshold``, a least cosine similarity; ``mode``)."""
        return [document for document, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """``similarity_search`` over the asyncio client."""
        found = await self.asimilarity_search_with_score(query, k, **kwargs)
        return [document for document, _ in found]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``similarity_search``, each Document with its cosine similarity to the query."""
        vector = self.embedding.embed_query(query) if self.embedding else None
        return self._search(query, vector, k=k, **options(kwargs))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``similarity_search_with_score`` over the asyncio client."""
        vector = await self.embedding.aembed_query(query) if self.embedding else None
        return await self._asearch(query, vector, k=k, **options(kwargs))

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` memories nearest to a vector of the store's space."""
        found = self._search(None, embedding, k=k, **options(kwargs))
        return [document for document, _ in found]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """``similarity_search_by_vector`` over the asyncio client."""
        found = await self._asearch(None, embedding, k=k, **options(kwargs))
        return [document for document, _ in found]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` memories near the query and unlike each other, picked by Engram's search
        (``diversity`` = 1 - ``lambda_mult``, among its best ``max(4k, 40)``: ``fetch_k``
        is not used)."""
        vector = self.embedding.embed_query(query) if self.embedding else None
        found = self._search(query, vector, k=k, diversity=1 - lambda_mult, **options(kwargs))
        return [document for document, _ in found]

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """``max_marginal_relevance_search`` over the asyncio client."""
        vector = await self.embedding.aembed_query(query) if self.embedding else None
        diversity = 1 - lambda_mult
        found = await self._asearch(query, vector, k=k, diversity=diversity, **options(kwargs))
        return [document for document, _ in found]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """``max_marginal_relevance_search`` for a vector of the store's space."""
        found = self._search(None, embedding, k=k, diversity=1 - lambda_mult, **options(kwargs))
        return [document for document, _ in found]

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """``max_marginal_relevance_search_by_vector`` over the asyncio client."""
        diversity = 1 - lambda_mult
        found = await self._asearch(None, embedding, k=k, diversity=diversity, **options(kwargs))
        return [document for document, _ in found]

    def _search(
        self, query: str | None, vector: Sequence[float] | None, **search: Any
    ) -> list[tuple[Document, float]]:
        args = search_args(query, vector, space=self.space, **search)
        return scored_documents(self.client.search(self.user_id, **args))

    async def _asearch(
        self, query: str | None, vector: Sequence[float] | None, **search: Any
    ) -> list[tuple[Document, float]]:
        args = search_args(query, vector, space=self.space, **search)
        return scored_documents(await self.async_client.search(self.user_id, **args))

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # relevance is 0 to 1: the cosine similarity, where it is not negative
        return _relevance

    # --- making a store -----------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store (``kwargs``: the constructor's, ``user_id`` first) holding these texts."""
        store = cls(embedding=embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """``from_texts`` over the asyncio client."""
        store = cls(embedding=embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    def as_engram_retriever(self, **kwargs: Any) -> EngramRetriever:
        """An ``EngramRetriever`` over this store's clients, user, space and embedding
        (``kwargs``: its ``k``, ``filter``, ``mode``, ``threshold``)."""
        from langchain_engram.retrievers import EngramRetriever

        return EngramRetriever(
            user_id=self.user_id,
            client=self._client,
            async_client=self._async_client,
            embedding=self.embedding,
            space=self.space,
            **kwargs,
        )


def _relevance(similarity: float) -> float:
    return max(0.0, similarity)


def _ids_for(
    contents: list[str],
    metadatas: list[dict[str, Any]] | None,
    ids: Sequence[str | None] | None,
    kwargs: dict[str, Any],
) -> list[str]:
    """The LangChain id of each text: the caller's, or a new UUID."""
    if kwargs:
        raise TypeError(f"unknown arguments {sorted(kwargs)}")
    if metadatas is not None and len(metadatas) != len(contents):
        raise ValueError(f"{len(metadatas)} metadatas for {len(contents)} texts")
    if ids is not None and len(ids) != len(contents):
        raise ValueError(f"{len(ids)} ids for {len(contents)} texts")
    chosen = ids or [None] * len(contents)
    return [given if given is not None else str(uuid.uuid4()) for given in chosen]


def _items(
    contents: list[str],
    metadatas: list[dict[str, Any]] | None,
    ids: list[str],
    vectors: list[list[float]] | None,
) -> list[MemoryIn]:
    """The memories to write; an id given twice is written once, as its last text."""
    items: dict[uuid.UUID, MemoryIn] = {}
    for position, (content, langchain_id) in enumerate(zip(contents, ids, strict=True)):
        metadata = metadatas[position] if metadatas else None
        item_id = memory_id(langchain_id)
        items.pop(item_id, None)
        items[item_id] = MemoryIn(
            content=content,
            metadata=stored_metadata(langchain_id, metadata),
            id=item_id,
            # numpy floats too (LangChain's fake embeddings give them)
            vector=[float(x) for x in vectors[position]] if vectors is not None else None,
        )
    return list(items.values())


def _chosen(batch: list[MemoryIn]) -> list[tuple[uuid.UUID | str, str]]:
    """(id, content) of each memory of a batch (every one has an id)."""
    return [(item.id, item.content) for item in batch if item.id is not None]


def _deletable(ids: list[str] | None, kwargs: dict[str, Any]) -> list[uuid.UUID]:
    if kwargs:
        raise TypeError(f"unknown arguments {sorted(kwargs)}")
    if ids is None:
        raise ValueError(
            "delete needs ids: to erase everything of the user (documents and sessions "
            "too), use engram_client's erase_user"
        )
    return [memory_id(langchain_id) for langchain_id in ids]
