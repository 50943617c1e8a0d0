"""Reading an export (``format.py``) for import: every line is checked before the
import commits, so a bad line is a 422 naming its number and nothing changes.

Lines are checked one by one (their type, fields, sizes, and the limits every write has),
then as a whole: chunks and messages belong to a document or session of the export,
vectors to an item of it, and the end line's counts agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import Any
from uuid import UUID

import msgspec
import numpy as np

from models.embedding.spaces import Space, SpaceRegistry
from models.errors import InvalidInput
from models.settings import Limits
from models.transfer.format import (
    LINE_TYPES,
    VERSION,
    BatchLine,
    ChunkLine,
    DocumentLine,
    End,
    Header,
    Line,
    MemoryLine,
    MessageLine,
    SessionLine,
    SpaceInfo,
    VectorLine,
    line_type,
)
from models.types import ItemType
from models.validation import FLOAT32_MAX, check_content, check_metadata, check_speaker_name

HALFVEC_MAX = 65504.0  # the largest finite half-precision number
_decoder = msgspec.json.Decoder(Line)
_numbers = msgspec.json.Decoder(list[float])


class Plan(msgspec.Struct, kw_only=True):
    """A checked export, ready to write."""

    header: Header
    usable: dict[str, Space]  # spaces of the header whose vectors are stored as they are
    sessions: list[SessionLine]
    messages: list[MessageLine]
    memories: list[MemoryLine]
    batches: list[BatchLine]
    documents: list[DocumentLine]
    chunks: list[ChunkLine]
    vectors: dict[UUID, list[tuple[VectorLine, np.ndarray]]]  # by item: the line, its vector
    unembedded: int  # items without a usable vector in their own space: the most queued


def numbered_lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a body with their numbers (counted from 1, blank lines
    included)."""
    start, number = 0, 0
    while start < len(body):
        end = body.find(b"\n", start)
        end = len(body) if end == -1 else end
        number += 1
        if body[start:end].strip():
            yield number, body[start:end]
        start = end + 1


class Reader:
    """Checks an export line by line (``feed``), then as a whole (``finish``)."""

    def __init__(self, *, limits: Limits, spaces: SpaceRegistry, languages: frozenset[str]) -> None:
        self._limits = limits
        self._languages = languages  # the database's text-search configurations
        self._here = {space.name: space for space in spaces.all()}
        self._header: Header | None = None
        self._header_spaces: dict[str, SpaceInfo] = {}
        self._usable: dict[str, Space] = {}
        self._end: tuple[int, End] | None = None
        self._lines: dict[str, list[tuple[int, Any]]] = {kind: [] for kind in LINE_TYPES}
        self._seen: set[tuple[str, Any]] = set()
        self._memories_taken = 0

    def feed(self, number: int, raw: bytes) -> None:
        """Check one line; a bad one is ``InvalidInput`` naming its number."""
        try:
            line = _decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"line {number}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"line {number}: not a JSON object ({exc})") from None
        try:
            self._take(number, line)
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc}") from None

    @property
    def memories_waiting(self) -> int:
        """How many memory lines were checked since ``take_memories`` last took them."""
        return len(self._lines["memory"]) - self._memories_taken

    def take_memories(self) -> list[MemoryLine]:
        """The memory lines checked since the last call: an import writes its memories as
        it reads on (in its transaction, so a bad line later still changes nothing)."""
        taken = self._lines["memory"][self._memories_taken :]
        self._memories_taken = len(self._lines["memory"])
        return [line for _, line in taken]

    def finish(self) -> Plan:
        """The whole export, checked: the lines refer to each other and the end line agrees."""
        if self._header is None:
            raise InvalidInput("the body is empty: an export starts with its header line")
        if self._end is None:
            raise InvalidInput("the export is truncated: its last line must be the end line")
        tally = {kind: len(lines) for kind, lines in self._lines.items()}
        number, end = self._end
        if {k: v for k, v in end.counts.items() if v} != {k: v for k, v in tally.items() if v}:
            raise InvalidInput(
                f"line {number}: the end line counts {end.counts}, but the export holds {tally}"
            )
        documents = {line.id: line for _, line in self._lines["document"]}
        sessions = {line.id for _, line in self._lines["session"]}
        items: dict[UUID, ItemType] = {line.id: "memory" for _, line in self._lines["memory"]}
        for number, line in self._lines["chunk"]:
            if line.document_id not in documents:
                raise InvalidInput(f"line {number}: chunk of document {line.document_id}, "
                                   "which the export does not hold")  # fmt: skip
            self._unique(number, "chunk index", (line.document_id, line.chunk_index))
            items[line.id] = "chunk"
        for number, line in self._lines["message"]:
            if line.session_id not in sessions:
                raise InvalidInput(f"line {number}: message of session {line.session_id}, "
                                   "which the export does not hold")  # fmt: skip
        vectors: dict[UUID, list[tuple[VectorLine, np.ndarray]]] = {}
        for number, (line, vector) in self._lines["vector"]:
            if items.get(line.item_id) != line.kind:
                raise InvalidInput(f"line {number}: vector of {line.kind} {line.item_id}, "
                                   "which the export does not hold")  # fmt: skip
            vectors.setdefault(line.item_id, []).append((line, vector))
        homes = [(line.id, line.space) for _, line in self._lines["memory"]] + [
            (line.id, documents[line.document_id].space) for _, line in self._lines["chunk"]
        ]
        return Plan(
            header=self._header,
            unembedded=sum(
                1
                for item_id, space in homes
                if space not in self._usable
                or space not in {v.space for v, _ in vectors.get(item_id, [])}
            ),
            usable=self._usable,
            sessions=self._values("session"),
            messages=self._values("message"),
            memories=self._values("memory"),
            batches=self._values("batch"),
            documents=self._values("document"),
            chunks=self._values("chunk"),
            vectors=vectors,
        )

    def _values(self, kind: str) -> list[Any]:
        return [line for _, line in self._lines[kind]]

    def _take(self, number: int, line: Any) -> None:
        if self._end is not None:
            raise InvalidInput("a line after the end line")
        if self._header is None:
            if not isinstance(line, Header):
                raise InvalidInput("an export starts with its header line")
            self._take_header(line)
            return
        if isinstance(line, Header):
            raise InvalidInput("a second header line")
        if isinstance(line, End):
            self._end = (number, line)
            return
        kind = line_type(line)
        if isinstance(line, VectorLine):
            self._unique(number, "vector", (line.item_id, line.space))
            self._lines[kind].append((number, (line, self._vector(line))))
            return
        key = (line.session_id, line.seq) if isinstance(line, MessageLine) else None
        if key is not None:
            self._unique(number, "message number", key)
        self._unique(number, kind, line.id)
        if kind in ("memory", "chunk"):  # their ids share one space: jobs, vectors
            self._unique(number, "the id of a memory or chunk:", line.id)
        self._check_content(line)
        self._check_times(line)
        self._lines[kind].append((number, line))

    def _take_header(self, header: Header) -> None:
        if header.version != VERSION:
            raise InvalidInput(
                f"export version {header.version} is not supported (this server reads {VERSION})"
            )
        for info in header.spaces:
            if info.name in self._header_spaces:
                raise InvalidInput(f"space {info.name} is listed twice")
            self._header_spaces[info.name] = info
            here = self._here.get(info.name)
            if here is not None and (here.dims, here.model) == (info.dims, info.model):
                self._usable[info.name] = here
        self._header = header

    def _unique(self, number: int, what: str, key: Any) -> None:
        if (what, key) in self._seen:
            raise InvalidInput(f"{what} {key} appears twice")
        self._seen.add((what, key))

    def _check_times(self, line: Any) -> None:
        """A time must read back as it was stored: in UTC, within years 1 to 9999."""
        for field in ("created_at", "updated_at", "expires_at", "occurred_at", "started_at"):
            value = getattr(line, field, None)
            if value is None:
                continue
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise InvalidInput(
                    f"{field} {value.isoformat()} is out of range: in UTC it must fall within "
                    "the years 1 to 9999"
                ) from None

    def _check_content(self, line: Any) -> None:
        if isinstance(line, MemoryLine | MessageLine | ChunkLine):
            check_content(line.content, self._limits)
        if isinstance(line, MemoryLine | SessionLine | DocumentLine | MessageLine):
            check_metadata(line.metadata, self._limits)
        if isinstance(line, MessageLine):
            check_speaker_name(line.name)
        for field in ("title", "source"):
            if "\x00" in (getattr(line, field, None) or ""):
                raise InvalidInput(f"{field} must not contain NUL characters")
        language = getattr(line, "language", None)
        if language is not None and language not in self._languages:
            raise InvalidInput(
                f"language {language!r} is not a text-search configuration of this database"
            )

    def _vector(self, line: VectorLine) -> np.ndarray:
        """The vector in the space's own precision (float32, float16 in a ``halfvec`` space):
        each number is read to the nearest double, then to the nearest value of that
        precision. An export's numbers are the shortest that read back to the stored
        values, so they come back bit for bit."""
        info = self._header_spaces.get(line.space)
        if info is None:
            raise InvalidInput(f"vector of space {line.space}, which the header does not list")
        try:
            numbers = _numbers.decode(line.embedding)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"embedding must be an array of numbers ({exc})") from None
        if len(numbers) != info.dims:
            raise InvalidInput(
                f"embedding has {len(numbers)} dimensions; space {info.name} has {info.dims}"
            )
        here = self._usable.get(line.space)
        half = here is not None and here.storage == "halfvec"
        limit = HALFVEC_MAX if half else FLOAT32_MAX
        values = np.asarray(numbers, dtype=np.float64)
        precision = np.float16 if half else np.float32
        if np.abs(values).max() <= limit:  # (False for NaN) nothing can overflow
            vector = values.astype(precision)
        else:
            with np.errstate(over="ignore"):  # beyond the precision's range: infinite, refused
                vector = values.astype(precision)
            if not np.isfinite(vector).all():
                raise InvalidInput(f"embedding numbers must be finite and within ±{limit:.6g}")
        # numbers too small for the space's precision become zeros
        if not vector.any():
            raise InvalidInput(
                f"embedding is all zeros in {'halfvec' if half else 'vector'} precision "
                "(cosine is undefined)"
            )
        if not values.all():  # "-0" reads as the integer 0: its sign, as written
            tokens = bytes(line.embedding).strip(b"[] \t\r\n").split(b",")
            for i in np.flatnonzero(values == 0):
                if tokens[i].strip().startswith(b"-"):
                    vector[i] = -0.0
        return vector
