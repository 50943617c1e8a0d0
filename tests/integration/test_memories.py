"""Memories end to end: API in-process, a real worker process, real Postgres and Redis."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.api import add_memories, search
from support.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")

FACTS = [
    "Alice drinks her coffee black, without sugar.",
    "Alice is allergic to peanuts.",
    "Alice lives in Lisbon and works as a nurse.",
    "Alice's daughter plays the violin.",
]


def test_add_then_search_finds_the_right_memory_first(client, new_user):
    user, headers = new_user()
    stored = add_memories(client, user, headers, FACTS)
    results = search(client, user, headers, query="What does Alice like to drink?", k=3)
    assert results[0]["id"] == stored[0]["id"]
    assert len(results) == 3
    assert results == sorted(results, key=lambda r: r["score"], reverse=True)
    assert all(r["score"] == r["similarity"] for r in results)
    assert {"type", "id", "score", "similarity", "content", "metadata", "created_at"} <= set(
        results[0]
    )


def test_add_answers_202_pending_in_request_order(client, new_user):
    user, headers = new_user()
    body = {"memories": [{"content": c} for c in FACTS]}
    answer = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    assert answer.status_code == 202
    memories = answer.json()["memories"]
    assert [m["content"] for m in memories] == FACTS
    assert {m["status"] for m in memories} <= {"pending", "ready"}
    first = memories[0]["id"]

    def ready() -> bool:
        got = client.get(f"/v1/users/{user}/memories/{first}", headers=headers).json()
        return bool(got["status"] == "ready")

    wait_until(ready, what="the worker to embed the memory")


def test_search_by_vector_threshold_filter_and_session(client, new_user, embedder):
    user, headers = new_user()
    add_memories(client, user, headers, FACTS[:2], metadata={"topic": "food"}, session_id="s1")
    add_memories(client, user, headers, FACTS[2:], metadata={"topic": "life"})
    vector = embedder.encode(["coffee"])[0].tolist()
    by_vector = search(client, user, headers, vector=vector, k=10)
    assert len(by_vector) == 4
    assert "coffee" in by_vector[0]["content"]
    strict = search(client, user, headers, vector=vector, k=10, threshold=0.99)
    assert strict == []
    assert len(search(client, user, headers, query="x", filter={"topic": "life"})) == 2
    assert all(
        r["metadata"] == {"topic": "life"}
        for r in search(client, user, headers, query="x", filter={"topic": "life"})
    )
    in_session = search(client, user, headers, query="x", session_id="s1")
    assert {r["session_id"] for r in in_session} == {"s1"} and len(in_session) == 2
    assert search(client, user, headers, query="x", types=["chunk"]) == []


def test_list_is_newest_first_with_cursor(client, new_user):
    user, headers = new_user()
    for fact in FACTS:  # one request each: distinct creation times
        add_memories(client, user, headers, [fact])
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/users/{user}/memories", params=params, headers=headers).json()
        seen += page["memories"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [m["content"] for m in seen] == list(reversed(FACTS))
    ready = client.get(f"/v1/users/{user}/memories", params={"status": "pending"}, headers=headers)
    assert ready.json()["memories"] == []


def test_patch_reembeds_new_content(client, new_user):
    user, headers = new_user()
    memory = add_memories(client, user, headers, ["Bob plays chess on Sundays."])[0]
    url = f"/v1/users/{user}/memories/{memory['id']}"
    answer = client.patch(
        url, json={"content": "Bob goes sailing on Sundays.", "metadata": {"a": 1}}, headers=headers
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == "pending"
    wait_until(
        lambda: client.get(url, headers=headers).json()["status"] == "ready", what="re-embed"
    )
    top = search(client, user, headers, query="boat on the sea", k=1)[0]
    assert top["content"] == "Bob goes sailing on Sundays." and top["metadata"] == {"a": 1}
    assert top["similarity"] > 0.3
    # metadata alone keeps the vector: no re-embedding
    same = client.patch(url, json={"importance": 0.9}, headers=headers).json()
    assert same["status"] == "ready" and same["importance"] == pytest.approx(0.9)


def test_delete_removes_from_search_at_once(client, new_user, db):
    user, headers = new_user()
    memories = add_memories(client, user, headers, FACTS)
    gone = memories[0]["id"]
    assert client.delete(f"/v1/users/{user}/memories/{gone}", headers=headers).status_code == 204
    assert gone not in [r["id"] for r in search(client, user, headers, query="coffee", k=10)]
    assert client.get(f"/v1/users/{user}/memories/{gone}", headers=headers).status_code == 404
    assert client.delete(f"/v1/users/{user}/memories/{gone}", headers=headers).status_code == 404
    count = db.execute(
        "SELECT count(*) FROM vec_minilm_384 WHERE user_id = %s AND item_id = %s", [user, gone]
    ).fetchone()
    assert count == (0,)


def test_client_ids_are_idempotent_and_conflicts_change_nothing(client, new_user, db):
    user, headers = new_user()
    memory_id = str(uuid.uuid4())
    body = {"memories": [{"id": memory_id, "content": "Carol likes tea."}]}
    first = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    again = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["memories"][0]["id"] == again.json()["memories"][0]["id"] == memory_id
    clash = {
        "memories": [{"content": "new one"}, {"id": memory_id, "content": "Carol likes coffee."}]
    }
    answer = client.post(f"/v1/users/{user}/memories", json=clash, headers=headers)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "conflict"
    rows = db.execute("SELECT content FROM memories WHERE user_id = %s", [user]).fetchall()
    assert rows == [("Carol likes tea.",)]


def test_exactly_k_results_whatever_the_users_share(client, new_user):
    """A user with few rows in a table full of others' rows still gets k results."""
    big, big_headers = new_user()
    add_memories(client, big, big_headers, [f"note number {i} about gardening" for i in range(150)])
    small, small_headers = new_user()
    add_memories(client, small, small_headers, FACTS)
    assert len(search(client, small, small_headers, query="gardening", k=4)) == 4
    assert len(search(client, small, small_headers, query="gardening", k=10)) == 4
    assert len(search(client, big, big_headers, query="gardening", k=100)) == 100


def _add(client, user, headers, items, **extra):
    answer = client.post(
        f"/v1/users/{user}/memories", json={"memories": items, **extra}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["memories"]


def test_the_same_content_is_stored_once_and_the_answer_says_so(client, new_user, db):
    user, headers = new_user()
    first = _add(client, user, headers, [{"content": "I like green tea."}])[0]
    again = _add(
        client,
        user,
        headers,
        [{"content": "I like green tea."}, {"content": "New fact."}, {"content": "New fact."}],
    )
    assert first["duplicate"] is False
    assert (again[0]["id"], again[0]["duplicate"]) == (first["id"], True)
    assert again[1]["duplicate"] is False
    assert (again[2]["id"], again[2]["duplicate"]) == (again[1]["id"], True)  # within a batch
    rows = db.execute("SELECT content FROM memories WHERE user_id = %s", [user]).fetchall()
    assert sorted(r[0] for r in rows) == ["I like green tea.", "New fact."]
    # a new id the client chose names a new memory, whatever its content
    chosen = str(uuid.uuid4())
    third = _add(client, user, headers, [{"content": "I like green tea.", "id": chosen}])[0]
    assert (third["id"], third["duplicate"]) == (chosen, False)
    assert client.get(f"/v1/users/{user}/memories/{chosen}", headers=headers).status_code == 200


def test_a_memory_written_again_takes_the_new_metadata_importance_and_ttl(client, new_user):
    user, headers = new_user()
    first = _add(client, user, headers, [{"content": "Dana runs.", "metadata": {"v": 1}}])[0]
    again = _add(
        client,
        user,
        headers,
        [{"content": "Dana runs.", "metadata": {"v": 2}, "importance": 0.8, "ttl_seconds": 600}],
    )[0]
    assert (again["id"], again["duplicate"]) == (first["id"], True)
    assert again["metadata"] == {"v": 2} and again["importance"] == pytest.approx(0.8)
    assert again["expires_at"] is not None
    # by the client's id too, and within one batch the last write wins
    chosen = str(uuid.uuid4())
    _add(client, user, headers, [{"content": "Eli swims.", "id": chosen}])
    last = _add(
        client,
        user,
        headers,
        [
            {"content": "Eli swims.", "id": chosen, "metadata": {"n": 1}},
            {"content": "Eli swims.", "id": chosen, "metadata": {"n": 2}},
        ],
    )
    assert [(m["id"], m["duplicate"]) for m in last] == [(chosen, True)] * 2
    stored = client.get(f"/v1/users/{user}/memories/{chosen}", headers=headers).json()
    assert stored["metadata"] == {"n": 2} and stored["expires_at"] is None


def test_other_sessions_and_expired_memories_are_not_duplicates(client, new_user):
    user, headers = new_user()
    plain = _add(client, user, headers, [{"content": "hello"}])[0]
    in_session = _add(client, user, headers, [{"content": "hello", "session_id": "s1"}])[0]
    assert in_session["id"] != plain["id"] and in_session["duplicate"] is False
    short = _add(client, user, headers, [{"content": "brief", "ttl_seconds": 1}])[0]
    time.sleep(1.2)
    later = _add(client, user, headers, [{"content": "brief"}])[0]
    assert later["id"] != short["id"] and later["duplicate"] is False


def test_concurrent_writes_of_the_same_content_store_it_once(client, new_user, db):
    user, headers = new_user()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(lambda _: _add(client, user, headers, [{"content": "race"}])[0], range(16))
        )
    assert len({a["id"] for a in answers}) == 1
    assert sum(not a["duplicate"] for a in answers) == 1
    count = db.execute("SELECT count(*) FROM memories WHERE user_id = %s", [user]).fetchone()
    assert count == (1,)


def test_a_bad_item_of_a_batch_is_named_and_nothing_is_written(client, new_user):
    user, headers = new_user()
    for items, named in (
        ([{"content": "fine"}, {"content": "bad\x00"}], "memories[1]: content"),
        ([{"content": "fine"}, {"content": "ok", "metadata": {"k\x00": 1}}], "memories[1]: "),
        ([{"content": "x" * 40_000}], "memories[0]: content is longer"),
        (
            [{"content": "ok"}, {"content": "ok", "occurred_at": "2024-05-01T09:00:00"}],
            "memories[1]: occurred_at must carry a UTC offset",
        ),
        (
            [{"content": "ok", "occurred_at": "0001-01-01T00:00:00+01:00"}],
            "memories[0]: occurred_at must be between",
        ),
    ):
        answer = client.post(
            f"/v1/users/{user}/memories", json={"memories": items}, headers=headers
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["message"].startswith(named), answer.text
    assert client.get(f"/v1/users/{user}/memories", headers=headers).json()["memories"] == []
    turns = [{"role": "user", "content": "hi"}, {"role": "user", "content": "\x00"}]
    client.post(f"/v1/users/{user}/sessions", json={"id": "s"}, headers=headers)
    answer = client.post(
        f"/v1/users/{user}/sessions/s/messages", json={"messages": turns}, headers=headers
    )
    assert answer.status_code == 422 and "messages[1]: content" in answer.text
    docs = [{"content": "fine"}, {"content": "bad\x00"}]
    answer = client.post(f"/v1/users/{user}/documents", json={"documents": docs}, headers=headers)
    assert answer.status_code == 422 and "documents[1]: content" in answer.text


def test_an_edited_memory_is_found_by_its_old_vector_until_the_new_one_is_stored(
    client, new_user, db
):
    user, headers = new_user()
    memory = add_memories(client, user, headers, ["Bob plays chess on Sundays."])[0]
    busy, busy_headers = new_user()  # work queued first keeps the worker busy meanwhile
    _add(
        client, busy, busy_headers, [{"content": f"{n} " + "filler text " * 40} for n in range(300)]
    )
    url = f"/v1/users/{user}/memories/{memory['id']}"
    edited = client.patch(url, json={"content": "The invoice number is 4471."}, headers=headers)
    assert edited.json()["status"] == "pending"
    found = search(client, user, headers, query="a game of chess", k=5)
    assert [(h["id"], h["content"]) for h in found] == [
        (memory["id"], "The invoice number is 4471.")
    ]
    status = db.execute(
        "SELECT status FROM embed_state WHERE user_id = %s AND item_id = %s",
        [user, memory["id"]],
    ).fetchone()
    assert status == ("pending",)  # found while its new vector was not there yet
    client.delete(f"/v1/users/{busy}", headers=busy_headers)
    wait_until(lambda: client.get(url, headers=headers).json()["status"] == "ready")
    top = search(client, user, headers, query="what is the invoice number?", k=1)[0]
    assert top["id"] == memory["id"]


def test_a_memory_happened_when_the_client_says(client, new_user, db):
    """``occurred_at``: given on adding (with its offset, answered in UTC), else the time of
    writing; changed by a patch (nothing is embedded again) and by a memory written again
    with one (kept when written again without)."""
    user, headers = new_user()
    then, plain = _add(
        client, user, headers,
        [{"content": "Fay moved to Oslo.", "occurred_at": "2019-03-01T10:00:00+01:00"},
         {"content": "Gus sings."}],
    )  # fmt: skip
    assert then["occurred_at"] == "2019-03-01T09:00:00Z"
    assert plain["occurred_at"] == plain["created_at"]
    url = f"/v1/users/{user}/memories/{then['id']}"
    patched = client.patch(url, json={"occurred_at": "2018-01-01T00:00:00Z"}, headers=headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["occurred_at"] == "2018-01-01T00:00:00Z"
    for bad in ("2018-01-01T00:00:00", None, "someday"):
        refused = client.patch(url, json={"occurred_at": bad}, headers=headers)
        assert refused.status_code == 422, refused.text
    again = _add(client, user, headers, [{"content": "Fay moved to Oslo."}])[0]
    assert (again["duplicate"], again["occurred_at"]) == (True, "2018-01-01T00:00:00Z")
    earlier = {"content": "Fay moved to Oslo.", "occurred_at": "2017-06-01T00:00:00Z"}
    again = _add(client, user, headers, [earlier])
    assert again[0]["occurred_at"] == "2017-06-01T00:00:00Z"
    stored = client.get(url, headers=headers).json()
    assert stored["occurred_at"] == "2017-06-01T00:00:00Z"
    listed = client.get(f"/v1/users/{user}/memories", headers=headers).json()["memories"]
    assert {m["occurred_at"] for m in listed} == {"2017-06-01T00:00:00Z", plain["occurred_at"]}
    # RFC 3339 offsets reach 23:59 hours, PostgreSQL's only 15:59: times are kept in UTC
    far = _add(
        client, user, headers, [{"content": "x", "occurred_at": "1597-06-30T15:07:58+21:50"}]
    )
    assert far[0]["occurred_at"] == "1597-06-29T17:17:58Z"
    for field in ("created_after", "created_before", "occurred_after", "occurred_before"):
        body = {"query": "Fay", field: "2020-01-01T00:00:00-23:59"}
        answer = client.post(f"/v1/users/{user}/search", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
