"""The public surface of ``engram_client`` is exactly what ``__all__`` names."""

from __future__ import annotations

import engram_client
from engram_client import types

PUBLIC = {
    "__version__",
    # clients
    "AsyncEngram",
    "Engram",
    # errors
    "ApiError",
    "AuthenticationError",
    "ClientError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UnavailableError",
    "UnexpectedAnswerError",
    # what is sent
    "DocumentIn",
    "MemoryIn",
    "MessageIn",
    "Fusion",
    "Weights",
    # answers
    "AcceptedDocuments",
    "AddedMemory",
    "ApiKey",
    "AuditEntry",
    "Batch",
    "BatchCounts",
    "ChunkOut",
    "Context",
    "ContextMemory",
    "CreatedKey",
    "Document",
    "DroppedSpace",
    "Erased",
    "FailedJob",
    "FailureReason",
    "Fill",
    "Health",
    "Imported",
    "LeftOut",
    "Memory",
    "Message",
    "Passage",
    "QueueDepth",
    "RateLimit",
    "Readiness",
    "RetriedJob",
    "SearchHit",
    "SearchResults",
    "Turn",
    "ServiceStatus",
    "Session",
    "SpaceCounts",
    "SpaceInfo",
    "SpaceStatus",
    # value types
    "ItemType",
    "Role",
    "Status",
    # the module of every Struct above
    "types",
}


def test_all_names_exactly_the_public_surface():
    assert len(engram_client.__all__) == len(set(engram_client.__all__))
    assert set(engram_client.__all__) == PUBLIC


def test_every_public_member_is_exported():
    members = {name for name in vars(engram_client) if not name.startswith("_")}
    assert members | {"__version__"} == set(engram_client.__all__)


def test_every_type_is_exported_from_the_package_too():
    assert set(types.__all__) <= set(engram_client.__all__)
    for name in types.__all__:
        assert getattr(engram_client, name) is getattr(types, name)
