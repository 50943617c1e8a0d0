"""What the vector store and the retriever send to Engram and read back, shared by both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from engram_client import Memory, SearchResults
from langchain_core.documents import Document

from langchain_engram._ids import split_metadata

Mode = Literal["vector", "hybrid"]
SEARCH_OPTIONS = frozenset({"filter", "mode", "threshold"})


def search_args(
    query: str | None,
    vector: Sequence[float] | None,
    *,
    k: int,
    space: str | None,
    mode: Mode = "vector",
    filter: Mapping[str, Any] | None = None,
    threshold: float | None = None,
    diversity: float | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``Engram.search``: memories only (a user's document chunks are
    not the store's); a vector search sends the vector alone, a hybrid one the text too."""
    return {
        "query": query if vector is None or mode == "hybrid" else None,
        "vector": [float(x) for x in vector] if vector is not None else None,
        "k": k,
        "types": ["memory"],
        "space": space,
        "mode": mode,
        "filter": filter,
        "threshold": threshold,
        "diversity": diversity,
    }


def options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The search options among a LangChain call's keyword arguments; any other is a
    ``TypeError``, so that a misspelt option never widens a search silently."""
    if unknown := set(kwargs) - SEARCH_OPTIONS:
        taken = ", ".join(sorted(SEARCH_OPTIONS))
        raise TypeError(f"unknown search options {sorted(unknown)}; the store takes {taken}")
    return dict(kwargs)


def scored_documents(results: SearchResults) -> list[tuple[Document, float]]:
    """The hits as Documents, each with its cosine similarity to the query."""
    found = []
    for hit in results.results:
        langchain_id, metadata = split_metadata(hit.id, hit.metadata)
        document = Document(id=langchain_id, page_content=hit.content, metadata=metadata)
        found.append((document, hit.similarity))
    return found


def document_of(memory: Memory) -> Document:
    """A stored memory as a Document."""
    langchain_id, metadata = split_metadata(memory.id, memory.metadata)
    return Document(id=langchain_id, page_content=memory.content, metadata=metadata)
