"""Sessions: messages kept in order, remembered as memories of their session, deletion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from support.api import search
from support.processes import wait_until

from models.ingest.tokens import hf_token_counter

pytestmark = pytest.mark.usefixtures("worker")

TURNS = [
    {"role": "user", "content": "I'm planning a trip to Porto in May."},
    {"role": "assistant", "content": "Lovely! Do you want restaurant tips?"},
    {"role": "user", "content": "Yes, and I'm vegetarian."},
]


def open_session(client, user, headers, **body):
    answer = client.post(f"/v1/users/{user}/sessions", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_messages_are_kept_in_order_and_remembered_as_memories(client, new_user):
    user, headers = new_user()
    session = open_session(client, user, headers, title="Trip")
    base = f"/v1/users/{user}/sessions/{session['id']}"
    added = client.post(f"{base}/messages", json={"messages": TURNS}, headers=headers)
    assert added.status_code == 201, added.text
    messages = added.json()["messages"]
    assert [m["seq"] for m in messages] == [1, 2, 3]
    more = client.post(
        f"{base}/messages", json={"messages": [{"role": "user", "content": "Thanks!"}]},
        headers=headers,
    ).json()["messages"]  # fmt: skip
    assert more[0]["seq"] == 4

    listed = client.get(f"{base}/messages", headers=headers).json()["messages"]
    assert [m["content"] for m in listed] == [t["content"] for t in TURNS] + ["Thanks!"]
    assert [m["seq"] for m in client.get(
        f"{base}/messages", params={"after": 2, "limit": 1}, headers=headers
    ).json()["messages"]] == [3]  # fmt: skip
    assert client.get(base, headers=headers).json()["message_count"] == 4

    memories_url = f"/v1/users/{user}/memories"
    wait_until(
        lambda: all(
            m["status"] == "ready"
            for m in client.get(memories_url, headers=headers).json()["memories"]
        )
    )
    remembered = client.get(
        memories_url, params={"session_id": session["id"]}, headers=headers
    ).json()["memories"]
    assert {m["id"] for m in remembered} == {m["memory_id"] for m in listed}
    assert {m["metadata"]["role"] for m in remembered} == {"user", "assistant"}
    found = search(client, user, headers, query="what diet am I on?", session_id=session["id"])
    assert found[0]["content"] == "Yes, and I'm vegetarian."


def test_concurrent_appends_keep_one_order(client, new_user):
    user, headers = new_user()
    session = open_session(client, user, headers)
    url = f"/v1/users/{user}/sessions/{session['id']}/messages"

    def say(i: int) -> None:
        body = {"messages": [{"role": "user", "content": f"message {i}"}]}
        assert client.post(url, json=body, headers=headers).status_code == 201

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(say, range(12)))
    listed = client.get(url, headers=headers).json()["messages"]
    assert [m["seq"] for m in listed] == list(range(1, 13))


def test_session_ids_are_idempotent_and_unknown_sessions_are_404(client, new_user):
    user, headers = new_user()
    first = open_session(client, user, headers, id="chat-1", title="A")
    again = open_session(client, user, headers, id="chat-1", title="A")
    assert first["created_at"] == again["created_at"]
    other = client.post(
        f"/v1/users/{user}/sessions", json={"id": "chat-1", "title": "B"}, headers=headers
    )
    assert other.status_code == 409
    missing = client.post(
        f"/v1/users/{user}/sessions/nope/messages",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert missing.status_code == 404
    bad_role = client.post(
        f"/v1/users/{user}/sessions/chat-1/messages",
        json={"messages": [{"role": "robot", "content": "hi"}]},
        headers=headers,
    )
    assert bad_role.status_code == 422
    listed = client.get(f"/v1/users/{user}/sessions", headers=headers).json()["sessions"]
    assert [s["id"] for s in listed] == ["chat-1"]


@pytest.mark.parametrize("keep", [False, True])
def test_deleting_a_session_drops_its_memories_unless_kept(client, new_user, db, keep):
    user, headers = new_user()
    session = open_session(client, user, headers)
    base = f"/v1/users/{user}/sessions/{session['id']}"
    client.post(f"{base}/messages", json={"messages": TURNS}, headers=headers)
    other = client.post(
        f"/v1/users/{user}/memories", json={"memories": [{"content": "unrelated"}]},
        headers=headers,
    ).json()["memories"][0]  # fmt: skip
    params = {"keep_memories": "true"} if keep else {}
    assert client.delete(base, params=params, headers=headers).status_code == 204
    assert client.get(base, headers=headers).status_code == 404
    assert db.execute("SELECT count(*) FROM messages WHERE user_id = %s", [user]).fetchone() == (0,)
    left = {row[0] for row in db.execute("SELECT content FROM memories WHERE user_id = %s", [user])}
    expected = {"unrelated", *(t["content"] for t in TURNS)} if keep else {"unrelated"}
    assert left == expected
    assert other["content"] == "unrelated"
    if not keep:
        jobs = db.execute("SELECT count(*) FROM embed_state WHERE user_id = %s", [user]).fetchone()
        assert jobs == (1,)  # the unrelated memory's only


def test_context_packs_relevant_memories_and_latest_turns_within_the_budget(
    client, new_user, embedder
):
    user, headers = new_user()
    add = {"memories": [
        {"content": "Alice is allergic to peanuts."},
        {"content": "Alice's sister lives in Porto."},
        {"content": "Alice drives a red bicycle to work."},
    ], "wait": True}  # fmt: skip
    assert client.post(f"/v1/users/{user}/memories", json=add, headers=headers).status_code == 200
    session = open_session(client, user, headers)
    base = f"/v1/users/{user}/sessions/{session['id']}"
    client.post(f"{base}/messages", json={"messages": TURNS}, headers=headers)
    wait_until(
        lambda: all(
            m["status"] == "ready"
            for m in client.get(f"/v1/users/{user}/memories", headers=headers).json()["memories"]
        )
    )
    url = f"/v1/users/{user}/context"
    body = {"query": "Suggest a restaurant for dinner in Porto", "session_id": session["id"]}
    context = client.post(url, json={**body, "max_tokens": 400}, headers=headers).json()
    count = hf_token_counter(embedder.tokenizer)
    assert context["tokens"] == count(context["text"]) <= 400
    # every turn, in the order said, and the memories not already among them
    assert [m["seq"] for m in context["messages"]] == [1, 2, 3]
    contents = [m["content"] for m in context["memories"]]
    assert "Alice's sister lives in Porto." in contents
    assert not set(contents) & {t["content"] for t in TURNS}  # deduplicated
    assert context["text"].startswith("Relevant memories:\n- ")
    assert context["text"].endswith("user: Yes, and I'm vegetarian.")

    small = client.post(url, json={**body, "max_tokens": 40}, headers=headers).json()
    assert small["tokens"] <= 40
    assert small["messages"][-1]["seq"] == 3  # the latest turn comes first
    assert len(small["messages"]) + len(small["memories"]) < 6
    no_session = client.post(url, json={"query": "peanuts?"}, headers=headers).json()
    assert no_session["messages"] == []
    assert no_session["memories"][0]["content"] == "Alice is allergic to peanuts."
    too_small = client.post(url, json={**body, "max_tokens": 5}, headers=headers)
    assert too_small.status_code == 422
