"""``replace`` in an external space: the item brings the new content's vector, stored in the
batch's transaction, ready at once; a memory is replaced in the space it is in. The API and
database of test_external_spaces.py (its fixtures), through a real ``engram api``."""

from __future__ import annotations

import uuid

import pytest
import test_external_spaces as external
from test_external_spaces import BIG, SMALL, error_of, search, store, vectors, write

# the module's own database with the external spaces, and its engram api
servers = external.servers
api_url = external.api_url
http = external.http
user = external.user
db = external.db


def stored_vector(conn, memory_id):
    return conn.execute(
        "SELECT embedding::text FROM vec_langchain_6 WHERE item_id = %s", [memory_id]
    ).fetchone()


def test_replace_stores_the_new_vector_ready_at_once(http, user, db):
    user_id, headers = user
    memory, other = store(http, user_id, headers, vectors(2, 6, seed=31))
    before = stored_vector(db, memory["id"])
    item = {"id": memory["id"], "content": "new words"}
    refused = write(http, user_id, headers, [item], replace=True, delete=[other["id"]])
    assert refused.status_code == 422, refused.text
    assert "vector" in error_of(refused)
    assert stored_vector(db, memory["id"]) == before
    item["vector"] = [0, 0, 3, 0, 0, 4]
    answer = write(http, user_id, headers, [item], replace=True, delete=[other["id"]])
    assert answer.status_code == 202, answer.text
    (written,) = answer.json()["memories"]
    assert (written["content"], written["status"]) == ("new words", "ready")
    assert answer.json()["deleted"] == 1
    assert stored_vector(db, memory["id"]) == ("[0,0,0.6,0,0,0.8]",)
    assert stored_vector(db, other["id"]) is None
    hits = search(http, user_id, headers, space=SMALL, vector=[0, 0, 3, 0, 0, 4], k=5)
    assert [(h["id"], h["content"]) for h in hits.json()["results"]] == [
        (memory["id"], "new words")
    ]
    assert hits.json()["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-6)


def test_a_memory_is_replaced_in_the_space_it_is_in(http, user, db):
    user_id, headers = user
    (memory,) = store(http, user_id, headers, vectors(1, 6, seed=32))
    elsewhere = {"id": memory["id"], "content": "other words", "vector": [1.0] * 2500}
    answer = write(http, user_id, headers, [elsewhere], replace=True, space=BIG)
    assert answer.status_code == 409, answer.text
    assert f"is in space {SMALL}" in error_of(answer)
    new = {"id": str(uuid.uuid4()), "content": "fresh", "vector": [1.0] * 2500}
    assert write(http, user_id, headers, [new], replace=True, space=BIG).status_code == 202
