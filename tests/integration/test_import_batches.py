"""An import writes its memories in batches as it reads its lines (``MEMORY_BATCH`` at a
time, in its one transaction): a large import is written whole and once, and a bad line or
a conflict found after batches were written still changes nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from support.exports import memory_rows, ndjson

from models.transfer import importer

NDJSON = {"Content-Type": "application/x-ndjson"}
COUNT = 1_234  # two whole batches written while reading, and the rest at the end


def holds(db: psycopg.Connection[Any], user: str) -> tuple[int, int, int]:
    """The user's memories, their jobs and their stored vectors (a document's chunks may be
    embedded meanwhile by the suite's worker)."""
    row = db.execute(
        """
        SELECT (SELECT count(*) FROM memories WHERE user_id = %(u)s),
               (SELECT count(*) FROM embed_state WHERE user_id = %(u)s AND kind = 'memory'),
               (SELECT count(*) FROM vec_minilm_384 WHERE user_id = %(u)s AND kind = 'memory')
        """,
        {"u": user},
    ).fetchone()
    assert row is not None
    return row


def post(client: TestClient[Any], user: str, headers: dict[str, str], body: bytes) -> Any:
    return client.post(f"/v1/users/{user}/import", content=body, headers={**headers, **NDJSON})


def test_a_large_import_is_written_whole_and_once(client, db, new_user, monkeypatch):
    user, headers = new_user()
    batches: list[int] = []
    insert = importer._Writer.insert_memories

    async def counted(writer: Any, rows: list[Any]) -> None:
        batches.append(len(rows))
        await insert(writer, rows)

    monkeypatch.setattr(importer._Writer, "insert_memories", counted)
    body = ndjson(memory_rows(user, COUNT))
    answer = post(client, user, headers, body)
    whole, rest = divmod(COUNT, importer.MEMORY_BATCH)
    assert batches == [importer.MEMORY_BATCH] * whole + [rest]
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["imported"]["memory"], found["imported"]["vector"]) == (COUNT, COUNT)
    assert found["queued"] == 0
    assert holds(db, user) == (COUNT, COUNT, COUNT)
    ready = db.execute(
        "SELECT count(*) FROM embed_state WHERE user_id = %s AND status = 'ready'", [user]
    ).fetchone()
    assert ready == (COUNT,)
    again = post(client, user, headers, body)
    assert again.status_code == 200, again.text
    assert again.json()["imported"]["memory"] == 0
    assert again.json()["existing"]["memory"] == COUNT
    assert holds(db, user) == (COUNT, COUNT, COUNT)


# a memory line of the first batch, and the last vector line, after two batches were written
@pytest.mark.parametrize("at", [3, COUNT * 2])
def test_a_bad_line_after_written_batches_changes_nothing(client, db, new_user, at):
    user, headers = new_user()
    rows = memory_rows(user, COUNT)
    if rows[at]["type"] == "vector":
        rows[at]["embedding"] = rows[at]["embedding"][:3]
        message = f"line {at + 1}: embedding has 3 dimensions"
    else:
        rows[at]["content"] = "a NUL \x00 here"
        message = f"line {at + 1}: content"
    answer = post(client, user, headers, ndjson(rows))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"].startswith(message), answer.text
    assert holds(db, user) == (0, 0, 0)


def test_a_truncated_import_changes_nothing(client, db, new_user):
    user, headers = new_user()
    rows = memory_rows(user, COUNT)[:-1]  # no end line: every memory was read and written
    answer = post(client, user, headers, ndjson(rows))
    assert answer.status_code == 422 and "truncated" in answer.text, answer.text
    assert holds(db, user) == (0, 0, 0)


def test_a_conflict_found_after_written_batches_changes_nothing(client, db, new_user):
    """A memory may not take the id of one of the user's chunks: found once every line is
    read, after the memories before it were written."""
    user, headers = new_user()
    document = {"documents": [{"content": "A short document about tea."}]}
    answer = client.post(f"/v1/users/{user}/documents", json=document, headers=headers)
    assert answer.status_code in (200, 201, 202), answer.text
    row = db.execute("SELECT id FROM chunks WHERE user_id = %s", [user]).fetchone()
    assert row is not None
    rows = memory_rows(user, COUNT)
    last_memory = COUNT * 2 - 1  # its vector line follows it
    rows[last_memory]["id"] = rows[last_memory + 1]["item_id"] = str(row[0])
    answer = post(client, user, headers, ndjson(rows))
    assert answer.status_code == 409, answer.text
    assert f"memory {row[0]}: the id already names a chunk" in answer.text
    assert holds(db, user) == (0, 0, 0)
