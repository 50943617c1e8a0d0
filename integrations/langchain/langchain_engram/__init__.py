"""LangChain over Engram: ``EngramVectorStore`` (a user's memories as a vector store) and
``EngramRetriever`` (Engram's search, hybrid by default).

    from langchain_engram import EngramVectorStore

    store = EngramVectorStore("alice", url="http://127.0.0.1:8000", api_key="egm_...")
    store.add_texts(["Alice drinks her coffee black."], ids=["coffee"])
    store.similarity_search("what does alice drink?", k=1)

It depends on ``engram-client`` and ``langchain-core`` only, never on the server.
"""

from langchain_engram.retrievers import EngramRetriever
from langchain_engram.vectorstores import EngramVectorStore

__version__ = "0.1.0"

__all__ = ["EngramRetriever", "EngramVectorStore", "__version__"]
