"""Sessions: messages kept in order, remembered as memories of their session, deletion."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.api import add_memories, search
from support.processes import wait_until
from support.searching import context_directly, search_directly

from models.ingest.tokens import hf_token_counter
from models.search.query import SearchQuery

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


def add(client, user, headers, session_id, messages, **body):
    url = f"/v1/users/{user}/sessions/{session_id}/messages"
    return client.post(url, json={"messages": messages, **body}, headers=headers)


def test_a_message_carries_its_time_speaker_and_metadata_into_its_own_memory(client, new_user):
    user, headers = new_user()
    session = open_session(client, user, headers, started_at="2023-05-08T13:56:00+02:00")
    assert session["started_at"] == "2023-05-08T11:56:00Z"
    turns = [
        {"role": "user", "name": "Caroline", "content": "I went to a support group.",
         "occurred_at": "2023-05-08T13:56:00+02:00", "metadata": {"dia": "D1:1", "role": "x"}},
        {"role": "assistant", "name": "Melanie", "content": "Ok."},
        {"role": "user", "content": "Ok."},
    ]  # fmt: skip
    answer = add(client, user, headers, session["id"], turns, wait=True)
    assert answer.status_code == 201, answer.text
    first, second, third = answer.json()["messages"]
    assert (first["name"], first["metadata"]) == ("Caroline", {"dia": "D1:1", "role": "x"})
    assert first["occurred_at"] == "2023-05-08T11:56:00Z"
    assert second["occurred_at"] == second["created_at"]  # default: the time of writing
    assert (third["name"], third["metadata"]) == (None, {})
    # each message a memory of its own, the same text twice too, all embedded (wait)
    assert len({m["memory_id"] for m in (first, second, third)}) == 3
    for message in (first, second, third):
        memory = client.get(f"/v1/users/{user}/memories/{message['memory_id']}", headers=headers)
        memory = memory.json()
        assert memory["status"] == "ready"
        assert memory["occurred_at"] == message["occurred_at"]
        assert memory["session_id"] == session["id"]
    memory = client.get(f"/v1/users/{user}/memories/{first['memory_id']}", headers=headers)
    # the role and the speaker's name win over the message's own keys
    assert memory.json()["metadata"] == {"dia": "D1:1", "role": "user", "name": "Caroline"}
    listed = client.get(f"/v1/users/{user}/sessions/{session['id']}/messages", headers=headers)
    assert listed.json()["messages"] == [first, second, third]
    found = search(client, user, headers, query="support group", k=1,
                   filter={"name": "Caroline"})  # fmt: skip
    assert found[0]["occurred_at"] == "2023-05-08T11:56:00Z"


def test_a_message_the_client_named_is_stored_once(client, new_user):
    user, headers = new_user()
    session = open_session(client, user, headers, id="chat")
    other = open_session(client, user, headers, id="other")
    named = {"id": str(uuid.uuid4()), "role": "user", "content": "Hello there"}
    first = add(client, user, headers, "chat", [named, named]).json()["messages"]
    assert first[0] == first[1]  # the same id twice in a batch: one message
    again = add(client, user, headers, "chat", [{"role": "user", "content": "new"}, named])
    assert again.status_code == 201
    assert again.json()["messages"][1] == first[0]
    assert [m["seq"] for m in again.json()["messages"]] == [2, 1]
    for where, body, why in [
        ("chat", [{"role": "user", "content": "lost"}, {**named, "content": "Hi!"}], "content"),
        ("chat", [{**named, "id": str(uuid.uuid4())}, {**named, "content": "x"}, named], "content"),
        ("other", [named], "session"),  # an id is the user's: one message, in one session
    ]:
        conflict = add(client, user, headers, where, body)
        assert conflict.status_code == 409, conflict.text
        said = conflict.json()["error"]["message"]
        assert said == f"message {named['id']} already exists " + (
            "with other content" if why == "content" else "in another session"
        )
    # nothing of a refused batch was written
    assert client.get(f"/v1/users/{user}/sessions/chat", headers=headers).json()[
        "message_count"
    ] == 2  # fmt: skip
    assert client.get(f"/v1/users/{user}/sessions/other", headers=headers).json()[
        "message_count"
    ] == 0  # fmt: skip
    memories = client.get(f"/v1/users/{user}/memories", headers=headers).json()["memories"]
    assert sorted(m["content"] for m in memories) == ["Hello there", "new"]
    assert session["id"] == "chat" and other["id"] == "other"


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"occurred_at": "2023-05-08T13:56:00"}, "messages[1]: occurred_at must carry a UTC"),
        ({"occurred_at": "9999-12-31T23:00:00-05:00"}, "messages[1]: occurred_at must be"),
        ({"name": ""}, "messages[1]: name must be 1 to 128"),
        ({"name": "   "}, "messages[1]: name must be 1 to 128"),
        ({"name": "x" * 129}, "messages[1]: name must be 1 to 128"),
        ({"name": "Ann\nSmith"}, "messages[1]: name must not contain control"),
        ({"metadata": {"a": "\x00"}}, "messages[1]: metadata strings must not contain NUL"),
        ({"id": "not-a-uuid"}, "messages[1].id"),
        ({"metadata": []}, "messages[1].metadata"),
    ],
)
def test_bad_message_fields_are_422_and_write_nothing(client, new_user, message, words):
    user, headers = new_user()
    open_session(client, user, headers, id="chat")
    body = [{"role": "user", "content": "fine"}, {"role": "user", "content": "hi", **message}]
    answer = add(client, user, headers, "chat", body)
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["error"]["message"]
    session = client.get(f"/v1/users/{user}/sessions/chat", headers=headers).json()
    assert session["message_count"] == 0


def test_a_session_start_must_carry_its_offset(client, new_user):
    user, headers = new_user()
    for started_at in ("2023-05-08T13:56:00", "10000-01-01T00:00:00Z"):
        answer = client.post(f"/v1/users/{user}/sessions", json={"started_at": started_at},
                             headers=headers)  # fmt: skip
        assert answer.status_code == 422, answer.text
    assert "started_at" in answer.json()["error"]["message"] or "$.started_at" in answer.text
    open_session(client, user, headers, id="s", started_at="2023-05-08T11:56:00Z")
    again = client.post(f"/v1/users/{user}/sessions", json={"id": "s"}, headers=headers)
    assert again.status_code == 409  # the same id with another start
    assert client.get(f"/v1/users/{user}/sessions", headers=headers).json()["sessions"][0][
        "started_at"
    ] == "2023-05-08T11:56:00Z"  # fmt: skip


CHAT = [f"Turn {n}: " + text for n, text in enumerate([
    "Hi, how was your weekend?",
    "Great, I adopted a puppy named Biscuit.",
    "What breed is Biscuit?",
    "A golden retriever, three months old.",
    "Does Biscuit sleep well?",
    "Not yet, he cries at night.",
], start=1)]  # fmt: skip


SPEAKERS = ("Ann", "Bo")


def spoken(i: int) -> str:
    """What the memory of ``CHAT[i]`` says, as ``tell`` sends it: its speaker, then it."""
    return f"{SPEAKERS[i % 2]}: {CHAT[i]}"


def tell(client, user, headers, session_id, lines):
    open_session(client, user, headers, id=session_id)
    turns = [{"role": ("user", "assistant")[i % 2], "name": SPEAKERS[i % 2], "content": c}
             for i, c in enumerate(lines)]  # fmt: skip
    answer = add(client, user, headers, session_id, turns, wait=True)
    assert answer.status_code == 201, answer.text
    return answer.json()["messages"]


def test_hits_from_messages_name_them_and_bring_their_neighbors(client, new_user):
    user, headers = new_user()
    said = tell(client, user, headers, "pets", CHAT)
    client.post(f"/v1/users/{user}/memories", json={"memories": [{"content": "Biscuit tin"}],
                "wait": True}, headers=headers)  # fmt: skip
    plain = search(client, user, headers, query="a golden retriever puppy", k=10)
    by_content = {h["content"]: h for h in plain}
    hit = by_content[spoken(3)]
    assert (hit["message_id"], hit["seq"], hit["session_id"]) == (said[3]["id"], 4, "pets")
    assert hit["neighbors"] is None  # not asked
    tin = by_content["Biscuit tin"]
    assert (tin["message_id"], tin["seq"], tin["neighbors"]) == (None, None, None)

    for mode in ("vector", "hybrid"):
        found = search(client, user, headers, query="golden retriever", k=10, neighbors=2,
                       mode=mode)  # fmt: skip
        by_content = {h["content"]: h for h in found}
        around = by_content[spoken(3)]["neighbors"]
        assert [t["seq"] for t in around] == [2, 3, 5, 6]
        assert around[0] == {
            "message_id": said[1]["id"], "seq": 2, "role": "assistant", "name": "Bo",
            "content": CHAT[1], "occurred_at": said[1]["occurred_at"],
        }  # fmt: skip
        # at the ends of the session, fewer; a hit that is not a message, none
        assert [t["seq"] for t in by_content[spoken(0)]["neighbors"]] == [2, 3]
        assert [t["seq"] for t in by_content[spoken(5)]["neighbors"]] == [4, 5]
        assert by_content["Biscuit tin"]["neighbors"] is None
    nearest = search(client, user, headers, query="golden retriever", k=1, neighbors=1)
    assert [t["content"] for t in nearest[0]["neighbors"]] == [CHAT[2], CHAT[4]]


@pytest.mark.parametrize("hybrid", [False, True])
def test_a_search_names_the_messages_it_finds_in_its_one_round_trip(
    client, new_user, servers, embedder, hybrid
):
    """The statements that find a hit say which message it is: a search over a chat is one
    batch, with no second round trip to look its hits' messages up, also in hybrid mode,
    whose lift needs their seq."""
    user, headers = new_user()
    said = tell(client, user, headers, "pets", CHAT)
    walks = tell(client, user, headers, "walks", CHAT[:2])
    add_memories(client, user, headers, ["Biscuit tin"])
    text = "golden retriever puppy"
    query = SearchQuery(vector=embedder.encode([text])[0], k=20, text=text, hybrid=hybrid)
    batches: list[list[Any]] = []
    hits = search_directly(servers, user, query, batches=batches, exact_max_rows=1000)
    assert len(batches) == 1
    messages = {m["memory_id"]: (m["id"], m["seq"], "pets") for m in said}
    messages |= {m["memory_id"]: (m["id"], m["seq"], "walks") for m in walks}
    assert len(hits) == len(CHAT) + 3
    for hit in hits:
        placed = messages.get(str(hit.id), (None, None, None))
        assert (str(hit.message_id) if hit.message_id else None, hit.seq, hit.session_id) == placed


def test_a_context_reads_as_a_search_does(client, new_user, servers, embedder):
    """A context's reads are the search's batches and one more for the turns around its
    hits, each in one round trip outside any transaction, prepared as a search's are."""
    user, headers = new_user()
    tell(client, user, headers, "pets", CHAT)
    text = "golden retriever puppy"
    query = SearchQuery(vector=embedder.encode([text])[0], k=5, text=text, hybrid=True)
    batches: list[list[Any]] = []
    context, prepared = context_directly(
        servers, user, query, batches=batches, latest=[], max_tokens=1000,
        count=hf_token_counter(embedder.tokenizer), exact_max_rows=1000, ef_search=40,
        hints=None, neighbors=1, floor=0.0,
    )  # fmt: skip
    assert len(batches) == 2  # the search, then the turns around its hits
    assert prepared >= len(batches[0])  # the search's statements, as a search prepares them
    assert "golden retriever" in context.text and context.passages


def test_hybrid_lifts_the_turns_said_near_a_strong_hit_and_most_the_reply(client, new_user):
    """A message's fused score gains ``fusion.turns`` (0.2 by default) times the best fused
    score of the candidates said up to ``fusion.reach`` turns (3) before or after it in its
    session, and twice that share of the question just before it, when more."""
    user, headers = new_user()
    open_session(client, user, headers, id="studio")
    turns = ["Have you been to the pottery studio on Elm Street?",
             "Yes, last Saturday: I made a blue vase there.",
             "The weather turned cold this week.",
             "I still need to buy groceries for dinner."]  # fmt: skip
    said = [{"role": "user", "name": "Ann" if n % 2 == 0 else "Bo", "content": text}
            for n, text in enumerate(turns)]  # fmt: skip
    assert add(client, user, headers, "studio", said, wait=True).status_code == 201
    query = {"query": "pottery studio on Elm Street", "k": 4, "mode": "hybrid"}

    def scores(fusion):
        found = search(client, user, headers, **query, fusion=fusion)
        assert all(h["message_id"] is not None for h in found)  # each hit names its message
        return {h["seq"]: h["score"] for h in found}

    plain, lifted, near = scores({"turns": 0}), scores({}), scores({"reach": 1})
    assert set(plain) == set(lifted) == set(near) == {1, 2, 3, 4}
    for seq, score in plain.items():
        best_near = max(plain[other] for other in plain if other != seq)  # all within 3
        best_beside = max(plain.get(seq - 1, 0.0), plain.get(seq + 1, 0.0))
        reply = 2 * 0.2 * plain[1] if seq == 2 else 0.0  # seq 1 asks a question
        assert lifted[seq] == pytest.approx(score + max(0.2 * best_near, reply))
        assert near[seq] == pytest.approx(score + max(0.2 * best_beside, reply))
    assert lifted[2] > plain[2] + 0.2 * plain[1]  # the answer, after the question that matches
    assert lifted[4] > near[4]  # three turns from the question: lifted within reach 3 only


def test_neighbors_are_the_users_own_turns(client, new_user):
    """Two users with a session of the same id: each one's hits bring only their own turns."""
    alice, alice_headers = new_user()
    bob, bob_headers = new_user()
    tell(client, alice, alice_headers, "chat", CHAT)
    tell(client, bob, bob_headers, "chat", ["Bob's turn one", "Bob's golden retriever", "End"])
    found = search(client, bob, bob_headers, query="golden retriever", k=10, neighbors=10)
    assert {h["content"] for h in found} == {
        "Ann: Bob's turn one", "Bo: Bob's golden retriever", "Ann: End"
    }  # fmt: skip
    seen = {t["content"] for h in found for t in h["neighbors"]}
    assert seen == {"Bob's turn one", "Bob's golden retriever", "End"}
    other = client.post(f"/v1/users/{alice}/search", json={"query": "golden", "neighbors": 1},
                        headers=bob_headers)  # fmt: skip
    assert other.status_code == 403


def test_context_brings_the_turns_around_what_it_found_with_their_times(client, new_user):
    """A question answered a few turns away from where its words are: the context holds the
    found turn with its neighbours, as a passage under its time, and says what it left out."""
    user, headers = new_user()
    open_session(client, user, headers, id="picnic")
    turns = [
        {"role": "user", "name": "Ann", "content": "Guess who I met at the market today?"},
        {"role": "assistant", "name": "Bo", "content": "Who?"},
        {"role": "user", "name": "Ann", "content": "Carol! She moved to Porto last spring."},
        {"role": "assistant", "name": "Bo", "content": "How lovely, say hi from me."},
    ]
    for n, turn in enumerate(turns):
        turn["occurred_at"] = f"2023-05-08T13:5{n}:00Z"
    assert add(client, user, headers, "picnic", turns, wait=True).status_code == 201
    bees = {"content": "Ann keeps bees.", "occurred_at": "2022-01-02T09:00:00Z"}
    stored = {"memories": [bees], "wait": True}
    assert client.post(f"/v1/users/{user}/memories", json=stored, headers=headers).is_success
    body = {"query": "Where does Carol live now?", "max_tokens": 300}
    context = client.post(f"/v1/users/{user}/context", json=body, headers=headers).json()
    assert "Ann: Carol! She moved to Porto last spring." in context["text"]
    (passage,) = context["passages"]
    seqs = [t["seq"] for t in passage["turns"]]
    assert 3 in seqs and seqs == sorted(seqs) and len(seqs) >= 2  # with a neighbour
    assert "From past conversations:\n[2023-05-08 13:5" in context["text"]
    assert context["memories"][0]["message_id"] is not None
    assert set(context["left_out"]) == {"memories", "below_floor", "messages"}
    lone = client.post(f"/v1/users/{user}/context", json={**body, "neighbors": 0, "floor": 1.0},
                       headers=headers).json()  # fmt: skip
    assert [t["seq"] for p in lone["passages"] for t in p["turns"]] == [3]  # the best alone
    assert lone["left_out"]["below_floor"] == 4  # every other item: under the best's score
    bees = client.post(f"/v1/users/{user}/context", json={"query": "bees", "floor": 0.9},
                       headers=headers).json()  # fmt: skip
    assert bees["text"].startswith("Relevant memories:\n- [2022-01-02] Ann keeps bees.")
    # a context fuses as a search does: by scores, the most similar candidate alone gets
    # at least 1/2; by ranks, at most 2 / (k + 1), lifted by at most a fifth (turns)
    assert max(m["score"] for m in context["memories"]) >= 0.5
    by_ranks = client.post(f"/v1/users/{user}/context", headers=headers,
                           json={**body, "fusion": {"method": "ranks"}}).json()  # fmt: skip
    assert 0 < max(m["score"] for m in by_ranks["memories"]) <= 1.2 * 2 / 6
