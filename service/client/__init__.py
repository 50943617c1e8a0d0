"""The Python client of the Engram HTTP API: ``Engram`` (blocking) and ``AsyncEngram``.

    from service.client import Engram

    with Engram("http://127.0.0.1:8000", api_key) as engram:
        engram.add_memories("alice", ["Alice drinks her coffee black."], wait=True)
        hits = engram.search("alice", "what does alice drink?", k=1).results

Importing it loads httpx and msgspec only, none of the server's dependencies.
docs/client.md shows every operation.
"""

from service.client.aio import AsyncEngram
from service.client.errors import (
    ApiError,
    AuthenticationError,
    ClientError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    UnavailableError,
    UnexpectedAnswerError,
)
from service.client.sync import Engram
from service.client.types import DocumentIn, MemoryIn, MessageIn, Weights

__all__ = [
    "ApiError",
    "AsyncEngram",
    "AuthenticationError",
    "ClientError",
    "ConflictError",
    "DocumentIn",
    "Engram",
    "InvalidRequestError",
    "MemoryIn",
    "MessageIn",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UnavailableError",
    "UnexpectedAnswerError",
    "Weights",
]
