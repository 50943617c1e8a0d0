"""Domain types shared by the HTTP edge and the worker: frozen msgspec Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

Status = Literal["pending", "ready", "failed"]
ItemType = Literal["memory", "chunk"]


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    """A memory as stored, with its embedding state."""

    id: UUID
    user_id: str
    content: str
    metadata: dict[str, Any]
    session_id: str | None
    importance: float | None
    status: Status
    error: str | None
    space: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class NewMemory(msgspec.Struct, frozen=True, kw_only=True):
    """A validated memory to insert."""

    id: UUID
    content: str
    metadata: dict[str, Any]
    session_id: str | None
    importance: float | None
    ttl_seconds: int | None


class MemoryPatch(msgspec.Struct, frozen=True, kw_only=True):
    """A validated change to a memory; UNSET fields stay as they are."""

    content: str | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    importance: float | msgspec.UnsetType | None = msgspec.UNSET
    ttl_seconds: int | msgspec.UnsetType | None = msgspec.UNSET


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    """One search result."""

    type: ItemType
    id: UUID
    score: float
    similarity: float
    content: str
    metadata: dict[str, Any]
    session_id: str | None
    importance: float | None
    document_id: UUID | None
    chunk_index: int | None
    created_at: datetime


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as listed: never its secret."""

    id: UUID
    user_id: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: an admin (``user_id`` None) or a key scoped to one user."""

    key_id: str
    user_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.user_id is None


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """An item claimed by a worker for embedding."""

    user_id: str
    id: UUID
    kind: ItemType
    content: str
    content_hash: bytes
    attempts: int
    last_error: str | None


class FailedJob(msgspec.Struct, frozen=True, kw_only=True):
    """An item whose embedding failed for good."""

    id: UUID
    user_id: str
    type: ItemType
    space: str
    error: str | None
    attempts: int
    updated_at: datetime


class SpaceCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Items of a space by embedding state."""

    pending: int = 0
    ready: int = 0
    failed: int = 0
    total: int = 0


class Embedded(msgspec.Struct, frozen=True, kw_only=True):
    """A vector computed from the content with ``content_hash``."""

    user_id: str
    id: UUID
    kind: ItemType
    content_hash: bytes
    embedding: Any  # numpy.ndarray of the space's dims
