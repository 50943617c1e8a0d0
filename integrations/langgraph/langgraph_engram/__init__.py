"""A LangGraph store on Engram: ``EngramStore`` keeps LangGraph's items as the memories of
one Engram user, over the Engram client (``engram-client``)."""

from langgraph_engram.store import EngramStore

__all__ = ["EngramStore"]
