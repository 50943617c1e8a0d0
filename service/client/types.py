"""What the client sends and gets back: msgspec Structs mirroring the API's JSON.

The answer types the API shares with the rest of Engram come from ``models.types`` (msgspec
only, nothing heavy); the few that exist only at the HTTP edge are declared here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from models.types import (
    ApiKey,
    AuditEntry,
    Batch,
    BatchCounts,
    ChunkOut,
    Context,
    ContextMemory,
    Document,
    Erased,
    FailedJob,
    FailureReason,
    Fill,
    Imported,
    ItemType,
    Memory,
    Message,
    QueueDepth,
    Role,
    SearchHit,
    Session,
    SpaceCounts,
    SpaceInfo,
    SpaceStatus,
    Status,
)

__all__ = [
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
    "DocumentIn",
    "DroppedSpace",
    "Erased",
    "FailedJob",
    "FailureReason",
    "Fill",
    "Health",
    "Imported",
    "ItemType",
    "Memory",
    "MemoryIn",
    "Message",
    "MessageIn",
    "QueueDepth",
    "Readiness",
    "RetriedJob",
    "Role",
    "SearchHit",
    "SearchResults",
    "ServiceStatus",
    "Session",
    "SpaceCounts",
    "SpaceInfo",
    "SpaceStatus",
    "Status",
    "Weights",
]


# What the client sends. Fields left at None are not sent: the API's defaults apply.


class MemoryIn(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A memory to add; ``id`` makes the write idempotent."""

    content: str
    metadata: dict[str, Any] | None = None
    session_id: str | None = None
    importance: float | None = None  # 0 to 1
    ttl_seconds: int | None = None
    id: UUID | str | None = None


class DocumentIn(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A document to add; the server splits it into chunks."""

    content: str
    title: str | None = None
    source: str | None = None
    metadata: dict[str, Any] | None = None
    id: UUID | str | None = None
    format: str | None = None  # "text" or "markdown"; default: from source or title


class MessageIn(msgspec.Struct, kw_only=True):
    """A turn of a conversation."""

    role: Role
    content: str


class Weights(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Re-ranking of search results by recency and importance (docs/api.md)."""

    recency: float = 0.0
    importance: float = 0.0
    half_life_days: float = 30.0


# Answers that exist only at the HTTP edge.


class AddedMemory(Memory, frozen=True, kw_only=True):
    """A memory as added: ``duplicate`` when the user already had this content."""

    duplicate: bool = False


class SearchResults(msgspec.Struct, frozen=True, kw_only=True):
    """The best items first, the space searched, and the server's time."""

    results: list[SearchHit]
    space: str
    took_ms: float


class AcceptedDocuments(msgspec.Struct, frozen=True, kw_only=True):
    """Documents accepted for embedding, and the batch that follows their progress."""

    batch_id: UUID
    documents: list[Document]


class CreatedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A new API key; ``key`` is the secret, shown this once."""

    id: UUID
    key: str
    user_id: str | None
    created_at: datetime


class DroppedSpace(msgspec.Struct, frozen=True, kw_only=True):
    """A space whose vectors were dropped."""

    name: str
    vectors: int


class RetriedJob(msgspec.Struct, frozen=True, kw_only=True):
    """A failed item sent back for embedding (``retried`` jobs: one per user holding the id)."""

    id: UUID
    retried: int
    status: str


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``/healthz``: the process serves."""

    status: str


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """``/readyz``: whether Postgres, the schema and the broker are ready, and what is not."""

    ready: bool
    checks: dict[str, str]


class ServiceStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``/v1/status``: jobs by space and state, the broker's queue, the commonest errors."""

    spaces: list[SpaceStatus]
    queue: QueueDepth | None  # None: the broker did not answer
    failures: list[FailureReason]
    checked_at: datetime
