"""What the client sends and gets back: msgspec Structs mirroring the API's JSON.

It is long because it mirrors every answer of the API. The API's OpenAPI document
(``/schema/openapi.json``) is the reference; a test of the server's suite checks these
Structs against it, field by field. Fields the server adds later are ignored when decoding,
so an older client keeps working with a newer server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

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
    "Fusion",
    "Health",
    "Imported",
    "ItemType",
    "LeftOut",
    "Memory",
    "MemoryIn",
    "Message",
    "MessageIn",
    "Passage",
    "QueueDepth",
    "RateLimit",
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
    "Turn",
    "Weights",
]

Status = Literal["pending", "ready", "failed"]
ItemType = Literal["memory", "chunk"]
Role = Literal["user", "assistant", "system"]


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the API's answers: values, compared by their fields."""


# Answers.


class Memory(_Answer, frozen=True, kw_only=True):
    """A memory as stored; ``status`` is its embedding state in its own ``space``."""

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
    occurred_at: datetime | None = None  # when it happened (default: when it was written)


class AddedMemory(Memory, frozen=True, kw_only=True):
    """A memory as added: ``duplicate`` when the user already had this content."""

    duplicate: bool = False


class SearchHit(_Answer, frozen=True, kw_only=True):
    """One search result: a memory, or a chunk of a document."""

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
    occurred_at: datetime | None = None  # a chunk's: its document's created_at
    # a hit that is a message's memory: the message, and its neighbours when asked
    message_id: UUID | None = None
    seq: int | None = None
    neighbors: list[Turn] | None = None


class Turn(_Answer, frozen=True, kw_only=True):
    """A turn beside a search hit's message, in its session."""

    message_id: UUID
    seq: int
    role: Role
    name: str | None
    content: str
    occurred_at: datetime


class SearchResults(_Answer, frozen=True, kw_only=True):
    """The best items first, the spaces searched (``space``: the first), the spaces that
    hold the user's items but that the query could not go to (``unsearched``: an external
    space without a vector of its length), and the server's time."""

    results: list[SearchHit]
    space: str
    took_ms: float
    spaces: list[str] = msgspec.field(default_factory=list)
    unsearched: list[str] = msgspec.field(default_factory=list)


class Message(_Answer, frozen=True, kw_only=True):
    """One turn of a session; ``memory_id`` is the memory it is remembered as."""

    id: UUID
    session_id: str
    seq: int
    role: Role
    content: str
    memory_id: UUID | None
    created_at: datetime
    name: str | None = None  # the speaker's
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    occurred_at: datetime | None = None


class Session(_Answer, frozen=True, kw_only=True):
    """A conversation, with its number of messages."""

    id: str
    user_id: str
    title: str | None
    metadata: dict[str, Any]
    message_count: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None


class ContextMemory(_Answer, frozen=True, kw_only=True):
    """A search hit packed into a context: a memory, or a message (``message_id``) shown
    in its passage."""

    id: UUID
    content: str
    score: float
    metadata: dict[str, Any]
    occurred_at: datetime
    session_id: str | None = None
    message_id: UUID | None = None


class Passage(_Answer, frozen=True, kw_only=True):
    """Turns of one session packed into a context, in the order they were said."""

    session_id: str
    turns: list[Turn]


class LeftOut(_Answer, frozen=True, kw_only=True):
    """What a context did not pack: relevant but over the budget; under the relevance
    floor; the session's messages that did not fit."""

    memories: int
    below_floor: int
    messages: int


class Context(_Answer, frozen=True, kw_only=True):
    """What the user's memory holds on a question and the latest messages, packed within a
    token budget."""

    text: str  # ready to paste into a prompt
    tokens: int  # of ``text``, by the embedding model's tokenizer
    max_tokens: int
    memories: list[ContextMemory]  # by relevance
    passages: list[Passage]  # by the time of their first turn
    messages: list[Message]  # in the order they were said
    left_out: LeftOut


class Document(_Answer, frozen=True, kw_only=True):
    """A document; its status derives from the chunks being worked on."""

    id: UUID
    user_id: str
    title: str | None
    source: str | None
    metadata: dict[str, Any]
    collection: str
    status: Status
    error: str | None
    chunk_count: int
    space: str
    batch_id: UUID
    content_sha256: str  # of the content being served, or being embedded to replace it
    created_at: datetime
    updated_at: datetime


class AcceptedDocuments(_Answer, frozen=True, kw_only=True):
    """Documents accepted for embedding, and the batch that follows their progress."""

    batch_id: UUID
    documents: list[Document]


class ChunkOut(_Answer, frozen=True, kw_only=True):
    """One chunk of a document."""

    id: UUID
    document_id: UUID
    chunk_index: int
    content: str
    tokens: int
    status: Status
    error: str | None


class BatchCounts(_Answer, frozen=True, kw_only=True):
    """A batch's documents by status."""

    pending: int
    ready: int
    failed: int
    total: int


class Batch(_Answer, frozen=True, kw_only=True):
    """A batch of documents and how far its embedding has got."""

    id: UUID
    status: str  # in_progress | completed | failed
    counts: BatchCounts
    created_at: datetime


class Erased(_Answer, frozen=True, kw_only=True):
    """What an erasure deleted."""

    user_id: str
    memories: int
    documents: int
    vectors: int


class Imported(_Answer, frozen=True, kw_only=True):
    """What an import wrote, by line type."""

    user_id: str
    from_user_id: str  # the user the export's header names
    imported: dict[str, int]  # rows written
    existing: dict[str, int]  # rows the user already had, left as they were
    vectors_skipped: int  # vectors not stored: no matching space there, or their item existed
    queued: int  # embedding jobs made pending: items without a usable vector
    # items of an external space without a usable vector there: stored ``failed``
    without_vector: list[UUID] = msgspec.field(default_factory=list)


class ApiKey(_Answer, frozen=True, kw_only=True):
    """An API key as listed: never its secret."""

    id: UUID
    user_id: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class CreatedKey(_Answer, frozen=True, kw_only=True):
    """A new API key; ``key`` is the secret, shown this once."""

    id: UUID
    key: str
    user_id: str | None
    created_at: datetime


class SpaceCounts(_Answer, frozen=True, kw_only=True):
    """Items of a space by embedding state."""

    pending: int = 0
    ready: int = 0
    failed: int = 0
    total: int = 0


class Fill(_Answer, frozen=True, kw_only=True):
    """How far filling a space with every existing item has got."""

    requested_at: datetime
    filled_at: datetime | None  # every item has a job in the space; counts show the rest
    complete: bool  # filled, and no job of the space pending


class SpaceInfo(_Answer, frozen=True, kw_only=True):
    """An embedding space, with the caller's items in it by state (every user's, for an
    admin)."""

    name: str
    dims: int
    provider: str
    model: str  # "external" where the clients send the vectors (provider "external")
    default_for: list[str]
    storage: str
    max_input_tokens: int | None  # None in an external space: no model reads there
    counts: SpaceCounts
    fill: Fill | None = None


class DroppedSpace(_Answer, frozen=True, kw_only=True):
    """A space whose vectors were dropped."""

    name: str
    vectors: int


class FailedJob(_Answer, frozen=True, kw_only=True):
    """An item whose embedding failed for good."""

    id: UUID
    user_id: str
    type: ItemType
    space: str
    error: str | None
    attempts: int
    updated_at: datetime


class RetriedJob(_Answer, frozen=True, kw_only=True):
    """A failed item sent back for embedding (``retried`` jobs: one per user holding the id)."""

    id: UUID
    retried: int
    status: str


class AuditEntry(_Answer, frozen=True, kw_only=True):
    """One admin action. ``actor`` is the id of the key that did it; ``user_id`` the end user
    it concerned, if any."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    user_id: str | None = None


class SpaceStatus(_Answer, frozen=True, kw_only=True):
    """One space's jobs by state, how fast they get done, and how long the oldest waits."""

    space: str
    pending: int = 0
    retrying: int = 0  # pending again after a transient error
    ready: int = 0
    failed: int = 0
    embedded_last_minute: int = 0
    embedded_last_5_minutes: int = 0
    oldest_pending_seconds: float | None = None


class FailureReason(_Answer, frozen=True, kw_only=True):
    """An error text and how many jobs it holds, failed for good or waiting for a retry."""

    space: str
    status: str  # failed | retrying
    error: str
    count: int


class QueueDepth(_Answer, frozen=True, kw_only=True):
    """Wake-up messages in the broker's queue: waiting, taken by a worker, delayed, dead."""

    queue: str
    waiting: int
    in_flight: int  # delivered to a worker and not acknowledged yet
    delayed: int  # retried by the worker after an error, waiting for their time
    dead: int  # given up (the worker's sweep re-sends their items from Postgres)


class ServiceStatus(_Answer, frozen=True, kw_only=True):
    """``/v1/status``: jobs by space and state, the broker's queue, the commonest errors."""

    spaces: list[SpaceStatus]
    queue: QueueDepth | None  # None: the broker did not answer
    failures: list[FailureReason]
    checked_at: datetime


class Health(_Answer, frozen=True, kw_only=True):
    """``/healthz``: the process serves."""

    status: str


class Readiness(_Answer, frozen=True, kw_only=True):
    """``/readyz``: whether Postgres, the schema and the broker are ready, and what is not."""

    ready: bool
    checks: dict[str, str]


# What answers say in their headers, beside their JSON.


class RateLimit(msgspec.Struct, frozen=True):
    """The key's rate limit: ``limit`` cost units a minute, ``remaining`` of them, the
    window ending in ``reset`` seconds (docs/api.md, "Rate limits")."""

    limit: int
    remaining: int
    reset: int


# What the client sends. Fields left at None are not sent: the API's defaults apply.


class MemoryIn(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A memory to add; ``id`` makes the write idempotent."""

    content: str
    metadata: dict[str, Any] | None = None
    session_id: str | None = None
    importance: float | None = None  # 0 to 1
    ttl_seconds: int | None = None
    id: UUID | str | None = None
    occurred_at: datetime | None = None  # with its UTC offset; default: now
    vector: list[float] | None = None  # the content's vector: for an external space only


class DocumentIn(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A document to add; the server splits it into chunks."""

    content: str
    title: str | None = None
    source: str | None = None
    metadata: dict[str, Any] | None = None
    id: UUID | str | None = None
    format: str | None = None  # "text" or "markdown"; default: from source or title


class MessageIn(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A turn of a conversation; ``id`` makes the write idempotent."""

    role: Role
    content: str
    name: str | None = None  # the speaker's
    metadata: dict[str, Any] | None = None
    id: UUID | str | None = None
    occurred_at: datetime | None = None  # with its UTC offset; default: now
    vector: list[float] | None = None  # its memory's vector: when the memory space is external


class Fusion(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How hybrid mode fuses its rankings (docs/api.md): by ``"scores"`` (each side's
    rescaled to 0..1, averaged with the weights) or by ``"ranks"`` (weight / (k + rank),
    summed). ``turns``: the share of the best score near it that a message gains from
    the turns said up to ``reach`` turns before or after it (twice that share from a
    question just before it)."""

    method: Literal["scores", "ranks"] = "scores"
    vector: float = 1.0
    text: float = 1.0
    k: int = 5
    turns: float = 0.2
    reach: int = 3


class Weights(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Re-ranking of search results by recency and importance (docs/api.md)."""

    recency: float = 0.0
    importance: float = 0.0
    half_life_days: float = 30.0
