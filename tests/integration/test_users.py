"""The user as a whole: erasure, and forgetting what expires."""

from __future__ import annotations

import time

import pytest
from support.api import ADMIN, add_memories, search
from support.processes import wait_until

USER_TABLES = ("memories", "embed_state", "vec_minilm_384")

pytestmark = pytest.mark.usefixtures("worker")


def rows_of(db, user: str) -> dict[str, int]:
    return {
        table: db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", [user]).fetchone()[0]
        for table in USER_TABLES
    }


def test_erasing_a_user_deletes_everything_of_theirs_and_nothing_else(client, new_user, db):
    alice, alice_headers = new_user()
    bob, bob_headers = new_user()
    diary = [f"Alice's diary, day {day}: I hid the key under the mat." for day in (1, 2, 3)]
    add_memories(client, alice, alice_headers, diary)
    add_memories(client, bob, bob_headers, ["Bob's note: the key is under the mat."])
    bob_before = rows_of(db, bob)

    answer = client.delete(f"/v1/users/{alice}", headers=alice_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"user_id": alice, "memories": 3, "documents": 0, "vectors": 3}
    assert rows_of(db, alice) == dict.fromkeys(USER_TABLES, 0)
    listed = client.get(f"/v1/users/{alice}/memories", headers=alice_headers).json()
    assert listed["memories"] == []
    assert search(client, alice, alice_headers, query="where is the key?") == []
    assert rows_of(db, bob) == bob_before
    assert search(client, bob, bob_headers, query="where is the key?")[0]["content"].startswith(
        "Bob's note"
    )
    entry = next(
        e
        for e in client.get("/v1/audit", headers=ADMIN).json()["entries"]
        if e["action"] == "user.erase" and e["target"] == alice
    )
    assert entry["details"] == {"memories": 3, "documents": 0, "vectors": 3}


def test_erasure_is_for_the_user_or_an_admin_and_repeatable(client, new_user):
    alice, alice_headers = new_user()
    _, bob_headers = new_user()
    add_memories(client, alice, alice_headers, ["something to erase"])
    assert client.delete(f"/v1/users/{alice}", headers=bob_headers).status_code == 403
    assert client.delete(f"/v1/users/{alice}").status_code == 401
    first = client.delete(f"/v1/users/{alice}", headers=ADMIN)
    again = client.delete(f"/v1/users/{alice}", headers=ADMIN)
    assert (first.status_code, first.json()["memories"]) == (200, 1)
    assert (again.status_code, again.json()["memories"]) == (200, 0)


def test_expired_memories_vanish_at_once_and_the_sweep_deletes_them(client, new_user, db):
    user, headers = new_user()
    short = add_memories(client, user, headers, ["a secret that lasts a second"], ttl_seconds=1)
    kept = add_memories(client, user, headers, ["a fact that stays"])
    time.sleep(1.2)
    listed = client.get(f"/v1/users/{user}/memories", headers=headers).json()["memories"]
    assert [m["id"] for m in listed] == [kept[0]["id"]]  # hidden by the query at once
    assert (
        client.get(f"/v1/users/{user}/memories/{short[0]['id']}", headers=headers).status_code
        == 404
    )
    assert [r["id"] for r in search(client, user, headers, query="secret")] == [kept[0]["id"]]
    wait_until(lambda: rows_of(db, user) == dict.fromkeys(USER_TABLES, 1), what="the sweep")
