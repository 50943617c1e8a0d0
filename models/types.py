"""Domain types shared by the HTTP edge and the worker: frozen msgspec Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

Status = Literal["pending", "ready", "failed"]
ItemType = Literal["memory", "chunk"]
# Which jobs a claim serves first (models/jobs/outbox.py): ``interactive`` (memories,
# messages, single documents, anything written with ``wait``), then ``bulk`` (batches of
# documents, imports, space fills).
Lane = Literal["interactive", "bulk"]
Role = Literal["user", "assistant", "system"]


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
    occurred_at: datetime  # when it happened (default: when it was written)
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class NewMemory(msgspec.Struct, frozen=True, kw_only=True):
    """A validated memory to insert."""

    id: UUID | None  # the client's; None: the content decides whether it is new
    content: str
    metadata: dict[str, Any]
    session_id: str | None
    importance: float | None
    ttl_seconds: int | None
    occurred_at: datetime | None = None  # None: now
    # the client's vector (numpy.ndarray, unit length), for an external space only
    vector: Any = None


class MemoryPatch(msgspec.Struct, frozen=True, kw_only=True):
    """A validated change to a memory; UNSET fields stay as they are."""

    content: str | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    importance: float | msgspec.UnsetType | None = msgspec.UNSET
    ttl_seconds: int | msgspec.UnsetType | None = msgspec.UNSET
    occurred_at: datetime | msgspec.UnsetType = msgspec.UNSET
    # the new content's vector as the client sent it, for a memory of an external space
    vector: list[float] | None = None


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """A message beside a search hit's, in its session."""

    message_id: UUID
    seq: int
    role: Role
    name: str | None
    content: str
    occurred_at: datetime


class SearchHit(msgspec.Struct, frozen=True):
    """One search result."""

    # Positional as well as by keyword: a search builds its hits by field position
    # (``models.search.statements.hit_rows``), without a dict of keywords for each one.
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
    occurred_at: datetime  # a chunk's: its document's created_at
    # a hit that is a message's memory: the message, and the turns around it when asked
    message_id: UUID | None = None
    seq: int | None = None
    neighbors: list[Turn] | None = None


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
    request_id: str | None = None  # of the HTTP request that made the job pending
    lane: Lane = "interactive"


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


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    """How far filling a space with every existing item has got."""

    requested_at: datetime
    filled_at: datetime | None  # every item has a job in the space; counts show the rest
    complete: bool  # filled, and no job of the space pending


class SpaceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An embedding space as the API describes it."""

    name: str
    dims: int
    provider: str
    model: str  # "external" for an external space: the clients embed
    default_for: list[str]
    storage: str
    max_input_tokens: int | None  # None for an external space: no model reads here
    # the caller's items (every user's, for an admin) by embedding state in this space
    counts: SpaceCounts
    fill: Fill | None = None


class Embedded(msgspec.Struct, frozen=True, kw_only=True):
    """A vector computed from the content with ``content_hash``."""

    user_id: str
    id: UUID
    kind: ItemType
    content_hash: bytes
    embedding: Any  # numpy.ndarray of the space's dims


class Document(msgspec.Struct, frozen=True, kw_only=True):
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


class ChunkOut(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk of a document, as listed."""

    id: UUID
    document_id: UUID
    chunk_index: int
    content: str
    tokens: int
    status: Status
    error: str | None


class BatchCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A batch's documents by status."""

    pending: int
    ready: int
    failed: int
    total: int


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """A batch of documents and how far its embedding has got."""

    id: UUID
    status: str  # in_progress | completed | failed
    counts: BatchCounts
    created_at: datetime


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation, with its number of messages."""

    id: str
    user_id: str
    title: str | None
    metadata: dict[str, Any]
    started_at: datetime | None
    message_count: int
    created_at: datetime
    updated_at: datetime


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of a session; ``memory_id`` is the memory it is remembered as."""

    id: UUID
    session_id: str
    seq: int
    role: Role
    name: str | None  # the speaker's
    content: str
    metadata: dict[str, Any]
    memory_id: UUID | None
    occurred_at: datetime
    created_at: datetime


class ContextMemory(msgspec.Struct, frozen=True, kw_only=True):
    """A search hit packed into a context: a memory, or a message (``message_id``) shown
    in its passage."""

    id: UUID
    content: str
    score: float
    metadata: dict[str, Any]
    occurred_at: datetime
    session_id: str | None
    message_id: UUID | None


class Passage(msgspec.Struct, frozen=True, kw_only=True):
    """Turns of one session packed into a context (found, and around what was found), in
    the order they were said."""

    session_id: str
    turns: list[Turn]


class LeftOut(msgspec.Struct, frozen=True, kw_only=True):
    """What a context did not pack: found and relevant but over the budget; found but under
    the relevance floor; the session's messages that did not fit."""

    memories: int
    below_floor: int
    messages: int


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """What the user's memory holds on a question and the latest messages, packed within a
    token budget."""

    text: str  # ready to paste into a prompt
    tokens: int  # of ``text``, by the embedding model's tokenizer
    max_tokens: int
    memories: list[ContextMemory]  # by relevance
    passages: list[Passage]  # by the time of their first turn
    messages: list[Message]  # in the order they were said
    left_out: LeftOut


AuditAction = Literal[
    "key.create", "key.revoke", "job.retry", "space.fill", "space.drop", "user.erase"
]


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One admin action. ``actor`` is the id of the key that did it; ``user_id`` the end user
    it concerned, if any."""

    id: int
    at: datetime
    actor: str
    action: AuditAction
    target: str
    user_id: str | None
    details: dict[str, Any]


class Erased(msgspec.Struct, frozen=True, kw_only=True):
    """What an erasure deleted."""

    user_id: str
    memories: int
    documents: int
    vectors: int


class SpaceStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One space's jobs by state, how fast they get done, and how long the oldest waits."""

    space: str
    pending: int = 0
    retrying: int = 0  # pending again after a transient error
    ready: int = 0
    failed: int = 0
    embedded_last_minute: int = 0
    embedded_last_5_minutes: int = 0
    oldest_pending_seconds: float | None = None


class FailureReason(msgspec.Struct, frozen=True, kw_only=True):
    """An error text and how many jobs it holds, failed for good or waiting for a retry."""

    space: str
    status: str  # failed | retrying
    error: str
    count: int


class QueueDepth(msgspec.Struct, frozen=True, kw_only=True):
    """Wake-up messages in the broker's queue: waiting, taken by a worker, delayed, dead."""

    queue: str
    waiting: int
    in_flight: int  # delivered to a worker and not acknowledged yet
    delayed: int  # retried by dramatiq after an error, waiting for their time
    dead: int  # given up by dramatiq (the sweep re-sends their items from Postgres)


class Imported(msgspec.Struct, frozen=True, kw_only=True):
    """What an import wrote, by line type."""

    user_id: str
    from_user_id: str  # the user the header names
    imported: dict[str, int]  # rows written
    existing: dict[str, int]  # rows the user already had, left as they were
    vectors_skipped: int  # vectors not stored: no matching space here, or their item existed
    queued: int  # embedding jobs made pending: items without a usable vector
    # items of an external space without a usable vector: stored ``failed`` (the server
    # cannot embed them), by id
    without_vector: list[UUID] = msgspec.field(default_factory=list)
