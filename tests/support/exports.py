"""Exports made by hand for import tests: memories with their vectors, nothing to embed."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import numpy as np

from models.embedding.spaces import MINILM_384


def sentence(n: int) -> str:
    """Distinct words for every n, so that each memory adds many index entries."""
    return f"memory {n}: " + " ".join(f"w{n}x{i} v{(n * 7 + i) % 997}" for i in range(12))


def memory_rows(user: str, count: int) -> list[dict[str, Any]]:
    """The lines of an export of ``count`` memories with their vectors, each memory's
    vector line after it."""
    space = MINILM_384.name
    info = {"name": space, "dims": MINILM_384.dims, "model": MINILM_384.model,
            "provider": MINILM_384.provider}  # fmt: skip
    header = {"type": "header", "format": "engram.export", "version": 1, "user_id": user,
              "exported_at": "2026-12-06T00:00:00+00:00", "spaces": [info]}  # fmt: skip
    rows: list[dict[str, Any]] = [header]
    for n, vector in enumerate(np.random.default_rng(3).normal(size=(count, MINILM_384.dims))):
        item, content = str(uuid.uuid4()), sentence(n)
        digest = hashlib.sha256(content.encode()).hexdigest()
        rows.append({"type": "memory", "id": item, "content": content, "space": space,
                     "metadata": {"n": n, "tenth": n % 10}})  # fmt: skip
        rows.append({"type": "vector", "item_id": item, "kind": "memory", "space": space,
                     "content_sha256": digest, "embedding": vector.tolist()})  # fmt: skip
    rows.append({"type": "end", "counts": {"memory": count, "vector": count}})
    return rows


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)
