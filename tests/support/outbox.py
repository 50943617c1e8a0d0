"""Jobs written straight into a database's outbox, for tests that claim them by hand."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import psycopg


def waiting(
    conn: psycopg.Connection[Any], user: str, count: int, *, lane: str = "interactive"
) -> list[uuid.UUID]:
    """``count`` pending memories of ``user`` in ``lane``, each written after the one before."""
    ids = []
    for n in range(count):
        item, content = uuid.uuid4(), f"{user} item {n}"
        digest = hashlib.sha256(content.encode()).digest()
        conn.execute(
            "INSERT INTO memories (user_id, id, content, space, content_hash) "
            "VALUES (%s, %s, %s, 'minilm-384', %s)",
            [user, item, content, digest],
        )
        conn.execute(
            "INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, lane, "
            "pending_since) VALUES (%s, %s, 'minilm-384', 'memory', %s, %s, "
            "clock_timestamp())",
            [user, item, digest, lane],
        )
        ids.append(item)
    return ids
