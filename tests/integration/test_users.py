"""The user as a whole: the admin's list of users, erasure, and forgetting what expires."""

from __future__ import annotations

import time
from typing import Any

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


def test_the_admin_lists_users_with_their_counts_paged(client, new_user):
    prefix = f"list-{new_user()[0][5:]}-"
    users = [f"{prefix}{n}" for n in range(5)]
    for n, user in enumerate(users):
        key = client.post("/v1/keys", json={"user_id": user}, headers=ADMIN).json()["key"]
        headers = {"Authorization": f"Bearer {key}"}
        if n:
            add_memories(client, user, headers, [f"m{i}" for i in range(n)])
        if n == 4:
            made = client.post(f"/v1/users/{user}/sessions", json={"id": "s1"}, headers=headers)
            assert made.status_code == 201, made.text
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"prefix": prefix, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/users", params=params, headers=ADMIN)
        assert page.status_code == 200, page.text
        seen += page.json()["users"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [u["user_id"] for u in seen] == users
    assert [u["memories"] for u in seen] == [0, 1, 2, 3, 4]
    assert {u["keys"] for u in seen} == {1}
    assert [u["sessions"] for u in seen] == [0, 0, 0, 0, 1]
    assert {u["documents"] for u in seen} == {0}
    # a prefix starting after the cursor's user, and one matching nobody
    assert client.get("/v1/users", params={"prefix": f"{prefix}3"}, headers=ADMIN).json() == {
        "users": [seen[3]],
        "next_cursor": None,
    }
    nobody = client.get("/v1/users", params={"prefix": f"{prefix}x"}, headers=ADMIN).json()
    assert nobody == {"users": [], "next_cursor": None}


def test_the_user_list_is_for_admins_and_checks_its_parameters(client, new_user):
    _, headers = new_user()
    assert client.get("/v1/users", headers=headers).status_code == 403
    assert client.get("/v1/users").status_code == 401
    assert client.get("/v1/users?cursor=%%%", headers=ADMIN).status_code == 422
    assert client.get("/v1/users?prefix=a b", headers=ADMIN).status_code == 422
    assert client.get("/v1/users?limit=0", headers=ADMIN).status_code == 422
