"""What is accepted can be read back and imported again: a user's export, whatever they
wrote within the limits, imports into another user whole, and a second time changes
nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.api import ADMIN, add_memories
from support.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")

EDGES = [
    "x" * 100_000 + " and then some words",  # an unbroken word longer than a chunk may be
    "emoji 😀👨‍👩‍👧 and accents é and CJK 中文。" * 50,
    "# Title\n\n" + "A paragraph of prose. " * 600,
]


def export(client: Any, user: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/users/{user}/export", headers=headers)
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines()]


def test_an_export_of_everything_a_user_wrote_imports_again(client, new_user):
    user, headers = new_user()
    add_memories(client, user, headers, ["Zoe's cat is called Miso.", "ß" * 32_000],
                 metadata={"n": 2**53, "deep": {"a": {"b": {"c": [1.5e300]}}}})  # fmt: skip
    session = {"id": "s1", "started_at": "0001-01-02T00:00:00Z"}  # as early as it may be
    made = client.post(f"/v1/users/{user}/sessions", json=session, headers=headers)
    assert made.status_code == 201, made.text
    turns = [
        {"role": "user", "content": "hello"},
        {"role": "user", "content": "hello", "name": "Zoë 😀 " + "z" * 120,
         "metadata": {"n": 2**53}, "occurred_at": "9999-12-30T23:59:59.999999-00:00"},
    ]  # fmt: skip
    said = client.post(
        f"/v1/users/{user}/sessions/s1/messages", json={"messages": turns}, headers=headers
    )
    assert said.status_code == 201, said.text
    documents = [{"content": text, "title": f"doc{i}.md"} for i, text in enumerate(EDGES)]
    batch = client.post(
        f"/v1/users/{user}/documents", json={"documents": documents}, headers=headers
    )
    assert batch.status_code == 202, batch.text
    batch_url = f"/v1/users/{user}/batches/{batch.json()['batch_id']}"
    wait_until(lambda: client.get(batch_url, headers=headers).json()["status"] == "completed",
               timeout=120, what="the documents to be embedded")  # fmt: skip

    lines = export(client, user, headers)
    chunks = [line for line in lines if line["type"] == "chunk"]
    assert chunks and max(len(chunk["content"]) for chunk in chunks) <= 32_000
    body = "\n".join(json.dumps(line) for line in lines).encode()
    other = f"{user}-copy"
    for attempt in ("first", "second"):
        answer = client.post(
            f"/v1/users/{other}/import",
            content=body,
            headers={**ADMIN, "Content-Type": "application/x-ndjson"},
        )
        assert answer.status_code == 200, (attempt, answer.text)
    assert sum(answer.json()["imported"].values()) == 0  # the second time: nothing new
    copied = export(client, other, ADMIN)

    def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [row for row in rows if row["type"] != "header"]

    assert comparable(copied) == comparable(lines)
