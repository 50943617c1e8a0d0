"""How a LangGraph item is an Engram memory, and back.

An item ``(namespace, key) -> value`` is one memory of the store's Engram user:

- its id is ``uuid5(ITEM_IDS, json([namespace, key]))``, so a put of the same key names the
  same memory;
- its metadata is the value's own top-level fields (so Engram filters them on the server)
  beside reserved fields under ``langgraph:``: the namespace (whole, and label by label, so
  a namespace prefix is an equality filter), the key, whether it is indexed, its TTL;
- its content is the text to embed, taken from the value at the index fields, as
  LangGraph's own stores take it.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engram_client.types import Memory, SearchHit
from langgraph.store.base import (
    InvalidNamespaceError,
    Item,
    MatchCondition,
    SearchItem,
    get_text_at_path,
    tokenize_path,
)

ITEM_IDS = uuid.UUID("5f1c7a52-3a57-4d39-9d2c-6f0e1b7c2a11")
RESERVED = "langgraph:"
NAMESPACE = "langgraph:namespace"
LABEL = "langgraph:ns."  # + the label's position: "langgraph:ns.0", "langgraph:ns.1", ...
DEPTH = "langgraph:depth"
KEY = "langgraph:key"
INDEXED = "langgraph:indexed"
TTL = "langgraph:ttl"  # minutes, as LangGraph gives it
UPDATED = "langgraph:updated_at"  # when the item was last put (RFC 3339), not read
# Engram filters top-level metadata keys of this form only
FILTERABLE_KEY = r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,63}"
OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
Namespace = tuple[str, ...]


def item_id(namespace: Namespace, key: str) -> uuid.UUID:
    """The memory id of the item at ``namespace`` and ``key``."""
    return uuid.uuid5(ITEM_IDS, json.dumps([list(namespace), key], ensure_ascii=False))


def check_namespace(namespace: Namespace, *, prefix: bool = False) -> None:
    """LangGraph's rules for labels; an item's namespace must also be non-empty."""
    if not prefix and not namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    for label in namespace:
        if not isinstance(label, str) or not label or "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"Invalid namespace label {label!r} in {namespace}: labels are non-empty "
                "strings without periods or NUL characters."
            )


def check_value(value: Mapping[str, Any]) -> dict[str, Any]:
    """The value as JSON data, refused (``ValueError``) if it cannot be stored as it is."""
    if not isinstance(value, Mapping):
        raise ValueError(f"a value must be a dict, not {type(value).__name__}")
    for field in value:
        if not isinstance(field, str):
            raise ValueError(f"value keys must be strings, not {field!r}")
        if field.startswith(RESERVED):
            raise ValueError(f"value key {field!r}: keys starting {RESERVED!r} are reserved")
    _check_json(value, f"value of {sorted(value)[:3]}...")
    return dict(value)


def _check_json(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for field, inner in value.items():
            if not isinstance(field, str):
                raise ValueError(f"{where}: keys must be strings, not {field!r}")
            _check_json(inner, where)
    elif isinstance(value, list | tuple):
        for inner in value:
            _check_json(inner, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: numbers must be finite (JSON has no {value})")
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise ValueError(f"{where}: {type(value).__name__} is not JSON")


def index_text(value: Mapping[str, Any], fields: Sequence[str]) -> str:
    """The text to embed: the value's texts at ``fields``, one a line ('' when none)."""
    texts: list[str] = []
    for field in fields:
        texts.extend(get_text_at_path(value, field if field == "$" else tokenize_path(field)))
    return "\n".join(text for text in texts if text.strip())


def metadata_of(
    namespace: Namespace,
    key: str,
    value: Mapping[str, Any],
    *,
    indexed: bool,
    ttl: float | None,
    now: datetime,
) -> dict[str, Any]:
    """The memory's metadata: the value's fields and the reserved ones."""
    labels = {f"{LABEL}{i}": label for i, label in enumerate(namespace)}
    reserved = {
        NAMESPACE: list(namespace),
        DEPTH: len(namespace),
        KEY: key,
        INDEXED: indexed,
        UPDATED: now.isoformat(),
    }
    return {**value, **labels, **reserved, **({TTL: ttl} if ttl is not None else {})}


def placeholder(namespace: Namespace, key: str) -> str:
    """The content of an item with no text to embed (Engram stores non-blank content);
    searches never return it by meaning, since they ask for indexed items only."""
    return json.dumps([list(namespace), key], ensure_ascii=False)


def is_item(metadata: Mapping[str, Any]) -> bool:
    """Whether a memory is a LangGraph item (the user may hold other memories)."""
    return isinstance(metadata.get(NAMESPACE), list) and isinstance(metadata.get(KEY), str)


def value_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The item's value: its memory's metadata without the reserved fields."""
    return {k: v for k, v in metadata.items() if not k.startswith(RESERVED)}


def namespace_of(metadata: Mapping[str, Any]) -> Namespace:
    return tuple(metadata[NAMESPACE])


def ttl_of(metadata: Mapping[str, Any]) -> float | None:
    ttl = metadata.get(TTL)
    return float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else None


def ttl_seconds(ttl: float | None) -> int | None:
    """Engram's TTL (whole seconds, at least one) for LangGraph's (minutes)."""
    return None if ttl is None else max(1, math.ceil(ttl * 60))


def updated_at(metadata: Mapping[str, Any], default: datetime) -> datetime:
    """When the item was last put (a TTL refreshed by a read does not change it)."""
    stamp = metadata.get(UPDATED)
    try:
        return datetime.fromisoformat(stamp) if isinstance(stamp, str) else default
    except ValueError:
        return default


def item_of(memory: Memory) -> Item:
    return Item(
        value=value_of(memory.metadata),
        key=memory.metadata[KEY],
        namespace=namespace_of(memory.metadata),
        created_at=memory.created_at,
        updated_at=updated_at(memory.metadata, memory.updated_at),
    )


def search_item_of(memory: Memory, score: float | None = None) -> SearchItem:
    return SearchItem(
        namespace=namespace_of(memory.metadata),
        key=memory.metadata[KEY],
        value=value_of(memory.metadata),
        created_at=memory.created_at,
        updated_at=updated_at(memory.metadata, memory.updated_at),
        score=score,
    )


def hit_item(hit: SearchHit, *, scored: bool = True) -> SearchItem:
    """A search hit as LangGraph's ``SearchItem``; its score is the cosine similarity."""
    return SearchItem(
        namespace=namespace_of(hit.metadata),
        key=hit.metadata[KEY],
        value=value_of(hit.metadata),
        created_at=hit.created_at,
        updated_at=updated_at(hit.metadata, hit.created_at),
        score=hit.similarity if scored else None,
    )


def in_prefix(namespace: Namespace, prefix: Namespace) -> bool:
    return namespace[: len(prefix)] == prefix


def matches(condition: MatchCondition, namespace: Namespace) -> bool:
    """LangGraph's namespace match: ``*`` stands for any one label."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"unsupported match type: {condition.match_type!r}")
    return all(want in ("*", have) for have, want in pairs)


def passes(value: Mapping[str, Any], conditions: Mapping[str, Any] | None) -> bool:
    """LangGraph's filter on a value: top-level fields, each equal to a value (dicts match
    as subsets, lists element by element) or compared by ``$eq``, ``$ne``, ``$gt``,
    ``$gte``, ``$lt``, ``$lte``."""
    return all(_compare(value.get(k), want) for k, want in (conditions or {}).items())


def _compare(have: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        if any(str(k).startswith("$") for k in want):
            return all(_operate(have, op, operand) for op, operand in want.items())
        return isinstance(have, Mapping) and all(
            _compare(have.get(k), inner) for k, inner in want.items()
        )
    if isinstance(want, list | tuple):
        return (
            isinstance(have, list | tuple)
            and len(have) == len(want)
            and all(_compare(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have == want)


def _operate(have: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(have == operand)
    if op == "$ne":
        return bool(have != operand)
    if op not in OPERATORS:
        raise ValueError(f"unsupported filter operator: {op!r}")
    try:
        left, right = float(have), float(operand)
    except (TypeError, ValueError):
        return False
    return {"$gt": left > right, "$gte": left >= right, "$lt": left < right}.get(op, left <= right)


def server_filter(
    prefix: Namespace, conditions: Mapping[str, Any] | None, *, indexed: bool | None = None
) -> tuple[dict[str, Any], bool]:
    """Engram's search ``filter`` for items under ``prefix`` passing ``conditions``, and
    whether it says all of them (else the answer is a superset, to check here)."""
    clauses: dict[str, Any] = {f"{LABEL}{i}": label for i, label in enumerate(prefix)}
    clauses[KEY] = {"$exists": True}
    if indexed is not None:
        clauses[INDEXED] = indexed
    exact = True
    for field, want in (conditions or {}).items():
        translated = _translated(want) if _filterable(field) else None
        if translated is None:
            exact = False
        else:
            clauses[field] = translated
    return clauses, exact


def namespace_filter(prefixes: Sequence[Namespace], *, depth: int) -> dict[str, Any]:
    """Engram's filter for items under each of ``prefixes`` (``*`` stands for any label) and
    at least ``depth`` labels deep."""
    clauses: dict[str, Any] = {KEY: {"$exists": True}}
    for prefix in prefixes:
        clauses |= {f"{LABEL}{i}": label for i, label in enumerate(prefix) if label != "*"}
    if depth > 1:
        clauses[DEPTH] = {"$gte": depth}
    return clauses


def canonical(conditions: Mapping[str, Any]) -> str:
    """One text for equal filters."""
    return json.dumps(conditions, sort_keys=True)


def _filterable(field: Any) -> bool:
    return (
        isinstance(field, str)
        and not field.startswith(RESERVED)
        and bool(re.fullmatch(FILTERABLE_KEY, field))
    )


def _translated(want: Any) -> Any:
    """The Engram form of one condition, or None where it would not mean the same."""
    if _scalar(want):
        return want
    if not isinstance(want, Mapping) or not want or not all(op in OPERATORS for op in want):
        return None
    for op, operand in want.items():
        numeric = isinstance(operand, int | float) and not isinstance(operand, bool)
        if not (_scalar(operand) if op in ("$eq", "$ne") else numeric):
            return None
    return dict(want)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int) or (
        isinstance(value, float) and math.isfinite(value)
    )
