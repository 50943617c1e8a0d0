"""Rules for user input that a type alone cannot express; each breach is InvalidInput (422)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from models.embedding.spaces import Space
from models.errors import InvalidInput
from models.settings import Limits

FLOAT32_MAX = float(np.finfo(np.float32).max)
USER_ID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
MAX_NAME_CHARS = 128
# event times stay within years 1 to 9999 in UTC, so they read back as Python datetimes
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)


@contextmanager
def naming(field: str) -> Iterator[None]:
    """A breach found inside names ``field`` first: ``memories[1]: content must not ...``."""
    try:
        yield
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc}") from None


def check_user_id(user_id: str) -> str:
    if not USER_ID_RE.fullmatch(user_id):
        raise InvalidInput("user_id must be 1 to 128 characters of [A-Za-z0-9._:@-]")
    return user_id


def check_content(content: str, limits: Limits, *, field: str = "content") -> str:
    """Non-blank text without NUL characters, within the size limit."""
    if not content.strip():
        raise InvalidInput(f"{field} must not be empty")
    if len(content) > limits.max_content_chars:
        raise InvalidInput(f"{field} is longer than {limits.max_content_chars} characters")
    if "\x00" in content:
        raise InvalidInput(f"{field} must not contain NUL characters")
    return content


def check_session_id(session_id: str | None) -> str | None:
    if session_id is not None and not USER_ID_RE.fullmatch(session_id):
        raise InvalidInput("session_id must be 1 to 128 characters of [A-Za-z0-9._:@-]")
    return session_id


def check_event_time(at: datetime | None, *, field: str = "occurred_at") -> datetime | None:
    """An RFC 3339 time with its offset, between the years 1 and 9999 in UTC; in UTC
    (PostgreSQL takes offsets of at most 15:59 hours, RFC 3339 up to 23:59)."""
    if at is None:
        return None
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInput(f"{field} must carry a UTC offset (RFC 3339: 2024-05-01T09:30:00Z)")
    if not EARLIEST <= at <= LATEST:
        raise InvalidInput(f"{field} must be between the years 0001 and 9999 in UTC")
    return at.astimezone(UTC)


def check_time_filter(at: datetime | None, *, field: str) -> datetime | None:
    """A time to compare with (``created_after``...): in UTC when it has an offset (one
    without is read in UTC, as before), within the years 1 to 9999 in UTC."""
    if at is None or at.utcoffset() is None:
        return at
    return check_event_time(at, field=field)


def check_speaker_name(name: str | None) -> str | None:
    """1 to 128 characters, not blank, without control characters."""
    if name is None:
        return None
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.strip():
        raise InvalidInput(f"name must be 1 to {MAX_NAME_CHARS} characters, not blank")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidInput("name must not contain control characters")
    return name


def check_metadata(metadata: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """A JSON object within the size and depth limits, with no NUL in keys or strings."""
    if len(msgspec.json.encode(metadata)) > limits.max_metadata_bytes:
        raise InvalidInput(f"metadata is larger than {limits.max_metadata_bytes} bytes")
    _check_json_value(metadata, depth=1, max_depth=limits.max_metadata_depth)
    return metadata


def _check_json_value(value: Any, *, depth: int, max_depth: int) -> None:
    if isinstance(value, dict | list) and depth > max_depth:
        raise InvalidInput(f"metadata is nested deeper than {max_depth} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise InvalidInput("metadata keys must not contain NUL characters")
            _check_json_value(item, depth=depth + 1, max_depth=max_depth)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, depth=depth + 1, max_depth=max_depth)
    elif isinstance(value, str) and "\x00" in value:
        raise InvalidInput("metadata strings must not contain NUL characters")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("metadata numbers must be finite")


def check_vector(vector: Sequence[float], dims: int, space: str) -> np.ndarray:
    """The vector as a float32 unit vector: exactly the space's length, finite, within
    float32's range, not all zeros. Cosine ignores length, so scaling to unit length changes
    no result, and keeps every component within even halfvec's range."""
    if len(vector) != dims:
        raise InvalidInput(f"vector has {len(vector)} dimensions; space {space} needs {dims}")
    wide = np.asarray(vector, dtype=np.float64)
    peak = float(np.abs(wide).max())  # NaN if any component is NaN
    if not math.isfinite(peak):
        raise InvalidInput("vector must contain only finite numbers (no NaN or infinity)")
    if peak > FLOAT32_MAX:
        raise InvalidInput(f"vector components must be within ±{FLOAT32_MAX:.3e} (float32)")
    if peak == 0:
        raise InvalidInput("vector must not be all zeros (cosine is undefined)")
    # divided by the largest component first, so squaring can neither overflow nor underflow
    scaled = wide / peak
    return (scaled / math.sqrt(float(scaled @ scaled))).astype(np.float32)


def client_vector(vector: Sequence[float] | None, space: Space) -> np.ndarray:
    """The vector an item brings for an external ``space`` (its clients embed): exactly the
    space's length, finite, not all zeros. A space the server embeds in takes none."""
    if not space.external:
        if vector is not None:
            raise InvalidInput(
                f"vector: space {space.name} embeds its items itself; "
                "vectors are sent only to external spaces"
            )
        raise InvalidInput(f"space {space.name} embeds its items itself")
    if vector is None:
        raise InvalidInput(
            f"vector is required: space {space.name} is external and stores the vectors "
            "its clients send"
        )
    if len(vector) != space.dims:
        raise InvalidInput(
            f"vector must have {space.dims} numbers, not {len(vector)} (space {space.name})"
        )
    return check_vector(vector, space.dims, space.name)


def check_filter(conditions: dict[str, Any] | None, limits: Limits) -> dict[str, Any]:
    """A filter within the metadata limits; models/search/filters.py checks its grammar."""
    if not conditions:
        return {}
    return check_metadata(conditions, limits)
