"""Talking to the API in tests: the admin key's headers, writes that wait, searches, keys,
the OpenAPI document, and failing an item's embedding as the worker leaves it."""

from __future__ import annotations

import tempfile
from typing import Any

from litestar.testing import TestClient

from models.settings import Settings
from models.store import keys
from service.http.app import create_app
from support.processes import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def served_openapi() -> dict[str, Any]:
    """The OpenAPI document, from an app that is never started (building one opens nothing)."""
    offline = Settings.from_env(
        {
            "ENGRAM_HOME": tempfile.gettempdir(),
            "ENGRAM_DATABASE_URL": "postgresql://offline.invalid/engram",
            "ENGRAM_REDIS_URL": "redis://offline.invalid:6379",
        }
    )
    # never entered, so the lifespan never runs: the document needs neither Postgres nor Redis
    answer = TestClient(create_app(offline)).get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def parts_of(token: str) -> tuple[str, str]:
    """(lookup, secret) of a key: a secret may hold underscores, so the key format parses it."""
    parsed = keys.parse_token(token)
    assert parsed, token
    return parsed


def add_memories(
    client: TestClient[Any],
    user_id: str,
    headers: dict[str, str],
    contents: list[str],
    **extra: Any,
) -> list[dict[str, Any]]:
    """Add memories and wait until they are embedded; return them."""
    body = {"memories": [{"content": c, **extra} for c in contents], "wait": True}
    answer = client.post(f"/v1/users/{user_id}/memories", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    memories: list[dict[str, Any]] = answer.json()["memories"]
    assert all(m["status"] == "ready" for m in memories), memories
    return memories


def search(
    client: TestClient[Any], user_id: str, headers: dict[str, str], **body: Any
) -> list[dict[str, Any]]:
    answer = client.post(f"/v1/users/{user_id}/search", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


def fail(db: Any, user: str, item_id: str, error: str = "provider said 400: bad input") -> None:
    """Make the item's embedding fail for good, as the worker leaves it: no vector."""
    db.execute(
        "UPDATE embed_state SET status = 'failed', last_error = %s, attempts = 1 "
        "WHERE user_id = %s AND item_id = %s",
        [error, user, item_id],
    )
    db.execute("DELETE FROM vec_minilm_384 WHERE user_id = %s AND item_id = %s", [user, item_id])
