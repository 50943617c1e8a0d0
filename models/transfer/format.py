"""The export format (version 1): a user's data as NDJSON, one JSON object a line.

Each line has a ``type``: a ``header`` first (format, version, the user, when, and the
embedding spaces with their length and model), then ``session``, ``message``, ``memory``,
``batch``, ``document`` (each followed by the chunks of its live generation), ``chunk``,
``vector`` (one per item and space, in the space's own precision), and an ``end`` line with
the count of each type, so a truncated file is never taken for a whole one. Lines carry no
user id: the header names the user they were exported from.

Fields added since version 1 began are optional, so every earlier export still reads: a
memory or message without ``occurred_at`` happened when it was created, a message without
``name`` or ``metadata`` has none, a session without ``started_at`` has no start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from models.embedding.spaces import Space, Storage
from models.types import ItemType, Status

FORMAT: Literal["engram.export"] = "engram.export"
VERSION = 1
MEDIA_TYPE = "application/x-ndjson"

Time = Annotated[datetime, msgspec.Meta(tz=True)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]
SpaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Role = Literal["user", "assistant", "system"]
Importance = Annotated[float, msgspec.Meta(ge=0, le=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]
# a text-search configuration's name (an item's words are indexed in it)
Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
# what the columns hold: an integer beyond them is refused with its line, not failed in SQL
INT4 = 2**31 - 1
INT8 = 2**63 - 1
Int4Count = Annotated[int, msgspec.Meta(ge=0, le=INT4)]


class _Line(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """A line of an export; its ``type`` is the struct's tag."""


class SpaceInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An embedding space as the exporting server had it: vectors are usable elsewhere only
    in a space of the same name, length and model."""

    name: SpaceName
    dims: Annotated[int, msgspec.Meta(ge=1, le=16_000)]
    provider: str
    model: str
    storage: Storage = "vector"


class EmbeddingState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Status
    error: str | None = None


class Header(_Line, frozen=True, kw_only=True, tag="header"):
    format: Literal["engram.export"]
    version: int
    user_id: Name
    exported_at: Time
    spaces: list[SpaceInfo]


class SessionLine(_Line, frozen=True, kw_only=True, tag="session"):
    id: Name
    title: str | None = None
    metadata: dict[str, Any] = {}
    started_at: Time | None = None
    created_at: Time | None = None
    updated_at: Time | None = None


class MessageLine(_Line, frozen=True, kw_only=True, tag="message"):
    id: UUID
    session_id: Name
    seq: Annotated[int, msgspec.Meta(ge=1, le=INT8)]
    role: Role
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    content: str
    metadata: dict[str, Any] = {}
    memory_id: UUID | None = None
    occurred_at: Time | None = None  # None: its created_at
    created_at: Time | None = None


class MemoryLine(_Line, frozen=True, kw_only=True, tag="memory"):
    id: UUID
    content: str
    metadata: dict[str, Any] = {}
    session_id: Name | None = None
    importance: Importance | None = None
    space: SpaceName  # where it was written: its status is its state there
    occurred_at: Time | None = None  # None: its created_at
    created_at: Time | None = None
    updated_at: Time | None = None
    expires_at: Time | None = None
    embeddings: dict[SpaceName, EmbeddingState] = {}  # its state in each space
    language: Language | None = None  # None: the importing server's default


class BatchLine(_Line, frozen=True, kw_only=True, tag="batch"):
    id: UUID
    created_at: Time | None = None


class DocumentLine(_Line, frozen=True, kw_only=True, tag="document"):
    id: UUID
    collection: Name = "default"
    title: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    source: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    metadata: dict[str, Any] = {}
    space: SpaceName
    content_sha256: Sha256  # of the whole text, which is not kept: only its chunks are
    generation: Annotated[int, msgspec.Meta(ge=1, le=INT4)] = 1
    batch_id: UUID
    created_at: Time | None = None
    updated_at: Time | None = None


class ChunkLine(_Line, frozen=True, kw_only=True, tag="chunk"):
    id: UUID
    document_id: UUID
    chunk_index: Int4Count
    content: str
    tokens: Int4Count
    created_at: Time | None = None
    embeddings: dict[SpaceName, EmbeddingState] = {}
    language: Language | None = None  # None: the importing server's default


class VectorLine(_Line, frozen=True, kw_only=True, tag="vector"):
    item_id: UUID
    kind: ItemType
    space: SpaceName
    content_sha256: Sha256  # of the content the vector was made from
    embedding: msgspec.Raw  # a JSON array of numbers, kept as written (see the importer)


class End(_Line, frozen=True, kw_only=True, tag="end"):
    counts: dict[str, Count]


Line = (
    Header
    | SessionLine
    | MessageLine
    | MemoryLine
    | BatchLine
    | DocumentLine
    | ChunkLine
    | VectorLine
    | End
)
# the order of an export (a document's chunks follow it)
LINE_TYPES = ("session", "message", "memory", "batch", "document", "chunk", "vector")

_encoder = msgspec.json.Encoder()


def line_type(line: _Line) -> str:
    """The ``type`` of a line."""
    return str(type(line).__struct_config__.tag)


def encode(line: _Line) -> bytes:
    return _encoder.encode(line) + b"\n"


def space_info(space: Space) -> SpaceInfo:
    return SpaceInfo(
        name=space.name,
        dims=space.dims,
        provider=space.provider,
        model=space.model,
        storage=space.storage,
    )
