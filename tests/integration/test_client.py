"""The Python client (clients/python) against a real `engram api` process and a real worker:
every route group through ``Engram`` and ``AsyncEngram``, pagination, error mapping, the
chat-app story, and the README's and docs/client.md's examples as written."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from engram_client import (
    ApiError,
    AsyncEngram,
    AuthenticationError,
    ConflictError,
    DocumentIn,
    Engram,
    InvalidRequestError,
    MemoryIn,
    MessageIn,
    NotFoundError,
    PermissionDeniedError,
    RateLimit,
    types,
)
from engram_client.types import Weights
from support.api import fail, served_openapi
from support.processes import ADMIN_KEY, REPO

pytestmark = pytest.mark.usefixtures("worker")

SENT = ["MemoryIn", "DocumentIn", "MessageIn", "Weights"]


@pytest.fixture
def admin(api_url: str) -> Iterator[Engram]:
    with Engram(api_url, ADMIN_KEY) as engram:
        yield engram


def make_user(admin: Engram, prefix: str = "client") -> tuple[str, str]:
    """A fresh user id and a key that may act on it only."""
    user = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return user, admin.create_key(user).key


@pytest.fixture
def user(admin: Engram, api_url: str) -> Iterator[tuple[str, Engram]]:
    user_id, key = make_user(admin)
    with Engram(api_url, key) as engram:
        yield user_id, engram


def test_url_and_key_come_from_the_environment_unless_given(api_url, monkeypatch):
    monkeypatch.setenv("ENGRAM_URL", api_url)
    monkeypatch.setenv("ENGRAM_API_KEY", ADMIN_KEY)
    with Engram() as engram:
        assert engram.healthz().status == "ok"
        assert engram.readyz().ready
        made = engram.create_key("env-user")  # the admin key, from the environment
        assert made.id in {key.id for key in engram.list_keys()}
    with Engram(api_key="egm_0000000000000000_wrong") as engram, pytest.raises(AuthenticationError):
        engram.list_keys()
    monkeypatch.delenv("ENGRAM_API_KEY")
    with Engram() as engram, pytest.raises(AuthenticationError) as raised:
        engram.list_keys()
    assert (raised.value.status, raised.value.code) == (401, "unauthenticated")


def test_memories_add_wait_get_patch_delete(user):
    user_id, engram = user
    session = "kitchen"
    added = engram.add_memories(
        user_id,
        [
            "Carol takes her tea with oat milk.",
            MemoryIn(content="Carol's sister is called Dora.", metadata={"topic": "family"},
                     importance=0.9, session_id=session),
            {"content": "Carol runs on Tuesdays.", "ttl_seconds": 3600},
        ],
        wait=True,
    )  # fmt: skip
    assert [m.status for m in added] == ["ready"] * 3
    assert [m.duplicate for m in added] == [False] * 3
    assert added[1].metadata == {"topic": "family"} and added[1].session_id == session
    assert added[2].expires_at is not None
    again = engram.add_memories(user_id, ["Carol takes her tea with oat milk."])
    assert again[0].duplicate and again[0].id == added[0].id

    tea = engram.get_memory(user_id, added[0].id)
    assert tea == engram.get_memory(user_id, str(added[0].id))
    assert tea.content == "Carol takes her tea with oat milk."

    changed = engram.update_memory(user_id, tea.id, metadata={"topic": "drinks"}, importance=0.5)
    assert (changed.metadata, changed.importance, changed.status) == (
        {"topic": "drinks"},
        0.5,
        "ready",
    )
    cleared = engram.update_memory(user_id, tea.id, importance=None)
    assert cleared.importance is None and cleared.metadata == {"topic": "drinks"}
    rewritten = engram.update_memory(user_id, tea.id, content="Carol drinks green tea, no milk.")
    assert rewritten.status == "pending"
    [settled] = engram.wait_for_memories(user_id, [tea.id])
    assert settled.status == "ready"
    found = engram.search(user_id, "what kind of tea does Carol drink?", k=1).results
    assert found[0].content == "Carol drinks green tea, no milk."

    engram.delete_memory(user_id, tea.id)
    with pytest.raises(NotFoundError) as raised:
        engram.get_memory(user_id, tea.id)
    assert (raised.value.status, raised.value.code) == (404, "not_found")
    assert tea.id not in {hit.id for hit in engram.search(user_id, "tea", k=10).results}


def test_listing_pages_through_every_memory_newest_first(user):
    user_id, engram = user
    facts = [f"Fact number {i} about Erin." for i in range(8)]
    stored = engram.add_memories(user_id, facts, wait=True)
    listed = list(engram.list_memories(user_id, page_size=3))  # three pages
    assert sorted(m.id for m in listed) == sorted(m.id for m in stored)
    assert [m.created_at for m in listed] == sorted((m.created_at for m in listed), reverse=True)
    assert len({m.id for m in listed}) == 8
    assert [m.id for m in engram.list_memories(user_id, status="ready", page_size=5)] == [
        m.id for m in listed
    ]
    first_two = []
    for memory in engram.list_memories(user_id, page_size=2):  # stops when the caller stops
        first_two.append(memory)
        if len(first_two) == 2:
            break
    assert first_two == listed[:2]
    in_session = engram.add_memories(user_id, [MemoryIn(content="Erin said hi.", session_id="s1")])
    assert [m.id for m in engram.list_memories(user_id, session_id="s1")] == [in_session[0].id]
    assert [m.id for m in engram.list_memories(user_id, status="pending")] in (
        [in_session[0].id],
        [],  # already embedded
    )


def test_search_options_reach_the_api(user):
    user_id, engram = user
    now = datetime.now(UTC)
    engram.add_memories(
        user_id,
        [
            MemoryIn(content="Frank's locker code is K-7731.", metadata={"year": 2024}),
            MemoryIn(content="Frank's bike is a green Brompton.", metadata={"year": 2019}),
            MemoryIn(content="Frank feeds the neighbour's cat on Fridays.", session_id="cats",
                     importance=1.0),
        ],
        wait=True,
    )  # fmt: skip
    everything = engram.search(user_id, "Frank", k=10)
    assert len(everything.results) == 3 and everything.space == "minilm-384"
    assert everything.took_ms >= 0
    scores = [hit.score for hit in everything.results]
    assert scores == sorted(scores, reverse=True)

    code = engram.search(user_id, "K-7731", mode="hybrid", k=1).results
    assert code[0].content == "Frank's locker code is K-7731."
    recent = engram.search(user_id, "Frank", filter={"year": {"$gt": 2020}}, k=10).results
    assert [hit.metadata["year"] for hit in recent] == [2024]
    cats = engram.search(user_id, "Frank", session_id="cats", k=10).results
    assert [hit.session_id for hit in cats] == ["cats"]
    assert engram.search(user_id, "Frank", types=["chunk"], k=10).results == []
    assert engram.search(user_id, "Frank", created_before=now - timedelta(days=1)).results == []
    assert len(engram.search(user_id, "Frank", created_after=now - timedelta(hours=1)).results) == 3
    assert engram.search(user_id, "Frank", threshold=0.99).results == []
    weighted = engram.search(user_id, "Frank", weights=Weights(importance=0.9), k=3).results
    assert "cat" in weighted[0].content  # the important one
    diverse = engram.search(user_id, "Frank", diversity=0.5, k=2).results
    assert len(diverse) == 2
    by_vector = engram.search(user_id, vector=[0.5] * 384, k=2)
    assert len(by_vector.results) == 2


def test_documents_uploads_batches_and_chunks(user, tmp_path):
    user_id, engram = user
    accepted = engram.add_documents(
        user_id,
        [
            DocumentIn(content="# Boiler\n\nBleed the radiators every autumn.", title="boiler.md",
                       metadata={"room": "hall"}),
            {"content": "The spare key is under the blue flowerpot.", "source": "keys.txt"},
        ],
        collection="house",
    )  # fmt: skip
    assert len(accepted.documents) == 2
    batch = engram.wait_for_batch(user_id, accepted.batch_id, timeout=120)
    assert batch.status == "completed" and batch.counts.ready == batch.counts.total == 2

    page = tmp_path / "garden.html"
    page.write_text("<h1>Garden</h1><p>Water the roses at dawn.</p><script>x()</script>")
    uploaded = engram.upload_files(
        user_id, [page, ("notes.md", "# Bins\n\nBins go out on Thursday.")], collection="house"
    )
    assert [d.title for d in uploaded.documents] == ["garden.html", "notes.md"]
    assert engram.wait_for_batch(user_id, uploaded.batch_id, timeout=120).status == "completed"

    listed = list(engram.list_documents(user_id, collection="house", page_size=3))
    assert len(listed) == 4 and {d.status for d in listed} == {"ready"}
    assert list(engram.list_documents(user_id, collection="elsewhere")) == []
    garden = engram.get_document(user_id, uploaded.documents[0].id)
    assert garden.source == "garden.html" and garden.collection == "house"
    chunks = engram.list_chunks(user_id, garden.id)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert "Water the roses at dawn." in chunks[0].content and "x()" not in chunks[0].content

    hits = engram.search(user_id, "when do I water the roses?", types=["chunk"], k=1).results
    assert hits[0].document_id == garden.id and hits[0].type == "chunk"
    engram.delete_document(user_id, garden.id)
    with pytest.raises(NotFoundError):
        engram.get_document(user_id, garden.id)
    with pytest.raises(NotFoundError):
        engram.get_batch(user_id, uuid.uuid4())


def test_sessions_messages_and_their_pages(user):
    user_id, engram = user
    made = engram.create_session(user_id, "walk", title="Morning walk", metadata={"app": "demo"})
    assert (made.id, made.title, made.message_count) == ("walk", "Morning walk", 0)
    assert engram.create_session(user_id, "walk", title="Morning walk",
                                 metadata={"app": "demo"}) == made  # fmt: skip
    with pytest.raises(ConflictError):
        engram.create_session(user_id, "walk", title="Another title")
    other = engram.create_session(user_id)  # the server picks the id
    assert uuid.UUID(other.id)

    said = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i} of the walk."}
            for i in range(5)]  # fmt: skip
    messages = engram.add_messages(user_id, "walk", said)
    assert [m.seq for m in messages] == [1, 2, 3, 4, 5]
    assert [m.content for m in engram.list_messages(user_id, "walk", page_size=2)] == [
        m["content"] for m in said
    ]
    assert [m.seq for m in engram.list_messages(user_id, "walk", after=3)] == [4, 5]
    assert engram.get_session(user_id, "walk").message_count == 5
    assert {s.id for s in engram.list_sessions(user_id, page_size=1)} == {"walk", other.id}

    engram.wait_for_memories(user_id, [m.memory_id for m in messages if m.memory_id])
    assert len(list(engram.list_memories(user_id, session_id="walk"))) == 5
    engram.delete_session(user_id, other.id)
    engram.delete_session(user_id, "walk", keep_memories=True)
    with pytest.raises(NotFoundError):
        engram.get_session(user_id, "walk")
    assert len(list(engram.list_memories(user_id, session_id="walk"))) == 5  # kept
    with pytest.raises(NotFoundError):
        engram.add_messages(user_id, "walk", [{"role": "user", "content": "anyone there?"}])


def test_admin_keys_spaces_jobs_and_audit(admin, api_url, db):
    user_id, key = make_user(admin, "admin-tour")
    listed = {k.id: k for k in admin.list_keys()}
    assert {k.id for k in admin.list_keys(page_size=7)} == set(listed)  # page after page
    mine = [k for k in listed.values() if k.user_id == user_id]
    assert len(mine) == 1 and key.startswith(mine[0].prefix)
    with Engram(api_url, key) as engram:
        memory = engram.add_memories(user_id, ["Gina restores old radios."], wait=True)[0]
        spaces = {s.name: s for s in engram.list_spaces()}
        assert spaces["minilm-384"].dims == 384 and spaces["minilm-384"].counts.ready == 1
        assert engram.get_space("minilm-384").counts.total == 1
        with pytest.raises(PermissionDeniedError):
            engram.backfill_space("minilm-384")
        with pytest.raises(PermissionDeniedError):
            list(engram.failed_jobs())

        fail(db, user_id, str(memory.id))
        failed = [job for job in admin.failed_jobs(page_size=1) if job.user_id == user_id]
        assert [(job.id, job.type) for job in failed] == [(memory.id, "memory")]
        retried = admin.retry_job(memory.id)
        assert (retried.id, retried.retried, retried.status) == (memory.id, 1, "pending")
        assert engram.wait_for_memories(user_id, [memory.id])[0].status == "ready"
        with pytest.raises(NotFoundError):
            admin.retry_job(memory.id)  # no longer failed

        admin.revoke_key(mine[0].id)
        with pytest.raises(AuthenticationError):
            engram.get_memory(user_id, memory.id)
    with pytest.raises(ConflictError) as raised:
        admin.drop_space("minilm-384")  # the default space
    assert raised.value.status == 409 and "default" in raised.value.message
    with pytest.raises(NotFoundError, match="no space 'no-such-space'"):
        admin.get_space("no-such-space")
    with pytest.raises(NotFoundError):
        admin.revoke_key(uuid.uuid4())
    actions = {(e.action, e.target) for e in admin.audit_log(page_size=5)}
    assert ("key.revoke", str(mine[0].id)) in actions
    assert ("job.retry", str(memory.id)) in actions
    revoked = list(admin.audit_log(action="key.revoke", user_id=user_id, page_size=1))
    assert [(e.target, e.user_id) for e in revoked] == [(str(mine[0].id), user_id)]
    since = list(admin.audit_log(user_id=user_id, since=revoked[0].at))
    assert [e.id for e in since] == [revoked[0].id]


def test_export_import_status_and_metrics(admin, user, api_url, tmp_path):
    user_id, engram = user
    engram.add_memories(user_id, ["Ivy grows tomatoes.", "Ivy's bike is red."], wait=True)
    engram.create_session(user_id, "garden")
    engram.add_messages(user_id, "garden", [{"role": "user", "content": "Water them daily?"}])
    exported = engram.export_user(user_id)
    lines = [msgspec.json.decode(line) for line in exported.splitlines()]
    assert lines[0]["user_id"] == user_id and lines[-1]["counts"]["memory"] == 3

    copy, key = make_user(admin)
    with Engram(api_url, key) as engram_copy:
        imported = engram_copy.import_user(copy, exported)
        assert (imported.user_id, imported.from_user_id) == (copy, user_id)
        assert imported.imported["memory"] == 3 and imported.imported["session"] == 1
        (tmp_path / "ivy.ndjson").write_bytes(exported)
        again = engram_copy.import_user(copy, tmp_path / "ivy.ndjson")
        assert set(again.imported.values()) == {0} and again.existing["memory"] == 3
        found = engram_copy.search(copy, "what does Ivy grow?", k=1).results
        assert found[0].content == "Ivy grows tomatoes."
        with pytest.raises(InvalidRequestError):
            engram_copy.import_user(copy, b'{"not": "an export"}\n')
        with pytest.raises(PermissionDeniedError):
            engram_copy.status()

    status = admin.status(top=3)
    assert "minilm-384" in {s.space for s in status.spaces}
    assert status.queue is not None and len(status.failures) <= 3
    assert "engram_items" in admin.metrics()


def test_errors_carry_the_apis_status_code_and_message(api_url, admin, user):
    user_id, engram = user
    someone_else, _ = make_user(admin)
    with pytest.raises(PermissionDeniedError) as forbidden:
        engram.add_memories(someone_else, ["not mine"])
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    with pytest.raises(PermissionDeniedError):
        engram.list_keys()  # admin only
    with pytest.raises(InvalidRequestError) as invalid:
        engram.search(user_id, "anything", k=0)
    error = invalid.value
    assert (error.status, error.code) == (422, "invalid_input") and "k" in error.message
    assert error.details  # where the rule was broken
    with pytest.raises(InvalidRequestError, match="exactly one of query and vector"):
        engram.search(user_id)
    with pytest.raises(InvalidRequestError):
        engram.search(user_id, vector=[1.0, 2.0])  # not 384 numbers
    memory_id = uuid.uuid4()
    engram.add_memories(user_id, [MemoryIn(content="first text", id=memory_id)])
    with pytest.raises(ConflictError) as conflict:
        engram.add_memories(user_id, [MemoryIn(content="other text", id=memory_id)])
    assert conflict.value.code == "conflict"
    assert isinstance(conflict.value, ApiError) and str(conflict.value).startswith("409 conflict")
    with pytest.raises(NotFoundError):
        engram.delete_memory(user_id, uuid.uuid4())
    with pytest.raises(NotFoundError):  # ids are UUIDs: no route matches
        engram.get_memory(user_id, "not-a-uuid")


def test_odd_user_ids_stay_one_path_segment(admin):
    for odd in ("..", ".", "a.b@c:d"):  # valid user ids that a URL would resolve or split
        added = admin.add_memories(odd, ["A memory of a user with an odd id."])
        assert added[0].user_id == odd
        assert admin.get_memory(odd, added[0].id).user_id == odd
        assert admin.erase_user(odd).memories == 1
    keys = len(admin.list_keys())
    with pytest.raises(NotFoundError):  # "/" is escaped: no route, and never POST /v1/keys
        admin.add_memories("../keys", ["x"])
    assert len(admin.list_keys()) == keys


def test_async_client_over_every_route_group(api_url, admin, db, tmp_path):
    user_id, key = make_user(admin, "async")
    notes = tmp_path / "notes.txt"
    notes.write_text("The wifi password is on the fridge.")

    async def tour() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with AsyncEngram(api_url, ADMIN_KEY) as root, AsyncEngram(api_url, key) as engram:
            seen["health"] = (await engram.healthz()).status, (await engram.readyz()).ready
            added = await engram.add_memories(
                user_id, [f"Hana note {i}." for i in range(5)] + ["Hana plays the oboe."],
                wait=True,
            )  # fmt: skip
            seen["added"] = {m.status for m in added}
            seen["listed"] = [m.id async for m in engram.list_memories(user_id, page_size=2)]
            seen["got"] = (await engram.get_memory(user_id, added[-1].id)).content
            patched = await engram.update_memory(user_id, added[0].id, content="Hana note zero.")
            seen["patched"] = patched.status
            seen["settled"] = [
                m.status for m in await engram.wait_for_memories(user_id, [patched.id])
            ]
            await engram.delete_memory(user_id, added[1].id)
            # concurrent requests on one client
            hits = await asyncio.gather(
                engram.search(user_id, "which instrument does Hana play?", k=1),
                engram.search(user_id, "oboe", mode="hybrid", k=1),
            )
            seen["search"] = [h.results[0].content for h in hits]

            docs = await engram.add_documents(
                user_id, [DocumentIn(content="Hana's flat has a balcony.")]
            )
            uploaded = await engram.upload_files(user_id, [notes])
            seen["batches"] = [
                (await engram.wait_for_batch(user_id, b.batch_id, timeout=120)).status
                for b in (docs, uploaded)
            ]
            seen["documents"] = sorted(
                [d.title or "" async for d in engram.list_documents(user_id)]
            )
            document = await engram.get_document(user_id, uploaded.documents[0].id)
            seen["chunks"] = [c.content for c in await engram.list_chunks(user_id, document.id)]
            await engram.delete_document(user_id, document.id)

            await engram.create_session(user_id, "chat")
            turns = await engram.add_messages(
                user_id, "chat", [{"role": "user", "content": "Remind me to water the basil."}]
            )
            await engram.wait_for_memories(user_id, [t.memory_id for t in turns if t.memory_id])
            seen["messages"] = [m.content async for m in engram.list_messages(user_id, "chat")]
            seen["sessions"] = [s.id async for s in engram.list_sessions(user_id)]
            seen["session"] = (await engram.get_session(user_id, "chat")).message_count
            context = await engram.context(user_id, "what instrument?", session_id="chat")
            seen["context"] = context.text
            await engram.delete_session(user_id, "chat")

            seen["spaces"] = [s.name for s in await engram.list_spaces()]
            seen["space"] = (await engram.get_space("minilm-384")).dims
            made = await root.create_key(user_id)
            seen["key listed"] = made.id in {k.id for k in await root.list_keys()}
            await root.revoke_key(made.id)
            seen["to fail"] = added[2].id
            fail(db, user_id, str(added[2].id))
            seen["failed"] = [j.id async for j in root.failed_jobs() if j.user_id == user_id]
            seen["retried"] = (await root.retry_job(added[2].id)).retried
            seen["audit"] = {e.action async for e in root.audit_log(page_size=10)}
            try:
                await engram.get_memory(user_id, uuid.uuid4())
            except NotFoundError as exc:
                seen["error"] = exc.status, exc.code
            exported = await engram.export_user(user_id)
            seen["imported"] = (await root.import_user(f"{user_id}-copy", exported)).imported
            seen["status"] = [s.space for s in (await root.status()).spaces]
            seen["metrics"] = "engram_items" in await root.metrics()
            seen["erased"] = await engram.erase_user(user_id)
            seen["after"] = [m async for m in engram.list_memories(user_id)]
        return seen

    seen = asyncio.run(tour())
    assert seen["health"] == ("ok", True)
    assert seen["added"] == {"ready"} and len(seen["listed"]) == 6
    assert seen["got"] == "Hana plays the oboe."
    assert (seen["patched"], seen["settled"]) == ("pending", ["ready"])
    assert seen["search"] == ["Hana plays the oboe."] * 2
    assert seen["batches"] == ["completed", "completed"]
    assert seen["documents"] == ["", "notes.txt"]  # the JSON document has no title
    assert seen["chunks"] == ["The wifi password is on the fridge."]
    assert seen["messages"] == ["Remind me to water the basil."]
    assert seen["sessions"] == ["chat"] and seen["session"] == 1
    assert "Hana plays the oboe." in seen["context"] and "water the basil" in seen["context"]
    assert "minilm-384" in seen["spaces"] and seen["space"] == 384
    assert seen["key listed"] and seen["failed"] == [seen["to fail"]] and seen["retried"] == 1
    assert {"key.create", "key.revoke", "job.retry"} <= seen["audit"]
    assert seen["error"] == (404, "not_found")
    assert seen["imported"]["memory"] >= 5 and seen["imported"]["session"] == 0
    assert "minilm-384" in seen["status"] and seen["metrics"]
    erased = seen["erased"]
    assert erased.user_id == user_id and erased.memories >= 5 and erased.vectors >= 5
    assert seen["after"] == []


def test_event_times_speakers_and_the_turns_around_a_hit(user):
    user_id, engram = user
    then = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    made = engram.create_session(user_id, "porch", started_at=then)
    assert made.started_at == then
    mine = uuid.uuid4()
    said = [
        MessageIn(role="user", name="Ann", content="The plums are ripe.", occurred_at=then,
                  metadata={"turn": 1}, id=mine),
        MessageIn(role="assistant", name="Bo", content="Shall we make jam?"),
        {"role": "user", "content": "Yes, on Sunday.", "name": "Ann"},
    ]  # fmt: skip
    turns = engram.add_messages(user_id, "porch", said, wait=True)
    assert (turns[0].id, turns[0].name, turns[0].metadata) == (mine, "Ann", {"turn": 1})
    assert turns[0].occurred_at == then
    assert engram.add_messages(user_id, "porch", [said[0]]) == [turns[0]]  # stored once
    with pytest.raises(ConflictError):
        engram.add_messages(user_id, "porch", [MessageIn(role="user", content="x", id=mine)])
    hit = engram.search(user_id, "jam", k=1, neighbors=1).results[0]
    assert (hit.message_id, hit.seq, hit.session_id) == (turns[1].id, 2, "porch")
    assert [t.content for t in hit.neighbors or []] == ["The plums are ripe.", "Yes, on Sunday."]
    assert hit.neighbors and hit.neighbors[0].occurred_at == then
    old = engram.add_memories(user_id, [MemoryIn(content="Plum tree planted.", occurred_at=then)])
    assert old[0].occurred_at == then
    moved = engram.update_memory(user_id, old[0].id, occurred_at=then - timedelta(days=365))
    assert moved.occurred_at == then - timedelta(days=365)
    window = {"occurred_after": then - timedelta(minutes=1), "occurred_before": then}
    assert engram.search(user_id, "plums", **window).results == []  # before is exclusive
    second = then + timedelta(seconds=1)
    found = engram.search(user_id, "plums", occurred_after=then, occurred_before=second)
    assert [h.content for h in found.results] == ["Ann: The plums are ripe."]  # who said it


def test_edits_documents_uploads_and_messages_wait_when_told(user):
    user_id, engram = user
    oils = engram.add_memories(user_id, ["Kim paints with oils."], wait=True)[0]
    edited = engram.update_memory(
        user_id, oils.id, content="Kim paints with watercolours.", wait=True
    )
    assert edited.id == oils.id and edited.status == "ready"  # not pending: it waited
    assert edited.content == "Kim paints with watercolours."
    found = engram.search(user_id, "what does Kim paint with?", k=1).results
    assert found[0].content == "Kim paints with watercolours."  # by its new vector

    shed = DocumentIn(content="The shed key hangs by the back door.", title="shed.txt")
    added = engram.add_documents(user_id, [shed], wait=True)
    assert [(d.title, d.status) for d in added.documents] == [("shed.txt", "ready")]
    uploaded = engram.upload_files(user_id, [("fern.md", "# Fern\n\nWater it on Sundays.")],
                                   wait=True)  # fmt: skip
    assert [(d.title, d.status) for d in uploaded.documents] == [("fern.md", "ready")]
    assert engram.get_batch(user_id, uploaded.batch_id).status == "completed"

    engram.create_session(user_id, "studio")
    turns = engram.add_messages(
        user_id, "studio", [{"role": "user", "content": "Kim sells her paintings."}], wait=True
    )
    remembered = [t.memory_id for t in turns if t.memory_id]
    assert [engram.get_memory(user_id, m).status for m in remembered] == ["ready"]


def test_the_rate_limit_is_what_the_latest_answer_to_the_key_said(admin, api_url, settings):
    limit = settings.server.rate_limit_per_minute
    user_id = f"client-{uuid.uuid4().hex[:10]}"
    made = admin.create_key(user_id)
    with Engram(api_url, made.key) as engram:
        assert engram.rate_limit is None  # nothing answered yet
        engram.healthz()  # not under /v1: no rate limit told
        assert engram.rate_limit is None
        bees = engram.add_memories(user_id, ["Jo keeps bees."])[0]
        first = engram.rate_limit
        assert isinstance(first, RateLimit) and first.limit == limit  # as the API is set
        assert 0 <= first.remaining < first.limit and 1 <= first.reset <= 60
        with pytest.raises(NotFoundError):  # an error answer tells it too
            engram.get_memory(user_id, uuid.uuid4())
        engram.get_memory(user_id, bees.id)
        later = engram.rate_limit
        assert later is not None and later.limit == limit
        if later.reset <= first.reset:  # the same minute: one API process counts exactly
            assert later.remaining == first.remaining - 2  # a unit for each request since
        admin.revoke_key(made.id)
        with pytest.raises(AuthenticationError):  # no valid key: nothing told
            engram.get_memory(user_id, bees.id)
        assert engram.rate_limit is later

    async def told() -> RateLimit | None:
        async with AsyncEngram(api_url, ADMIN_KEY) as root:
            await root.list_spaces()
            return root.rate_limit

    told_async = asyncio.run(told())
    assert told_async is not None and told_async.limit == limit


# --- the examples of README.md and docs/client.md, as written ---------------------------


def python_blocks(markdown: Path, heading: str | None = None) -> list[str]:
    """The ```python blocks of a Markdown file (of one section, if ``heading`` is given)."""
    text = markdown.read_text()
    if heading is not None:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        text = text[start : end if end != -1 else None]
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_readme_chat_story_stores_turns_asks_for_context_and_forgets_the_user(
    api_url, monkeypatch, db, capsys
):
    """The issue's story through the README's snippet: a chat app stores turns, asks for
    context, and forgets a user; then nothing of the user is left."""
    monkeypatch.setenv("ENGRAM_URL", api_url)
    monkeypatch.setenv("ENGRAM_API_KEY", ADMIN_KEY)
    [snippet] = python_blocks(REPO / "README.md", "## A five-minute tour")
    user = f"bob-{uuid.uuid4().hex[:8]}"
    scope: dict[str, Any] = {}
    exec(snippet.replace('"bob"', repr(user)), scope)  # as a reader would paste it

    context = scope["context"]
    assert "passport" in context.text  # the relevant memory, from before the session
    assert "Lisbon" in context.text  # the session's turns
    assert any("passport" in m.content for m in context.memories)
    assert "Relevant memories:" in capsys.readouterr().out
    assert scope["erased"].memories == 3 and scope["erased"].vectors == 3
    with Engram() as engram:
        assert list(engram.list_memories(user)) == []
        assert list(engram.list_sessions(user)) == []
        assert engram.search(user, "passport").results == []
    for table in ("memories", "sessions", "messages", "embed_state", "vec_minilm_384"):
        count = db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", [user]).fetchone()
        assert count == (0,), table


def test_the_docs_client_examples_run(api_url, monkeypatch, tmp_path):
    monkeypatch.setenv("ENGRAM_URL", api_url)
    monkeypatch.setenv("ENGRAM_API_KEY", ADMIN_KEY)
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(REPO / "docs" / "client.md")
    assert len(blocks) >= 5
    user = f"alice-{uuid.uuid4().hex[:8]}"
    scope: dict[str, Any] = {}
    for block in blocks:  # one after the other, as a reader would try them
        exec(block.replace('"alice"', repr(user)), scope)
    assert scope["exact"].results[0].content == "Alice is allergic to peanuts."
    assert scope["health"].results[0].metadata == {"topic": "health"}
    assert "peanuts" in scope["context"].text and len(scope["chunks"]) == 1
    assert scope["status"].queue is not None
    with Engram() as engram:
        assert list(engram.list_memories("alice-copy")) == []  # erased again


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's tour needs curl")
def test_the_readme_curl_tour_runs(api_url, tmp_path):
    """The README's curl steps, with the test API's URL and admin key."""
    text = (REPO / "README.md").read_text()
    curl = text[text.index("### With curl") : text.index("### With the Python client")]
    blocks = re.findall(r"```sh\n(.*?)```", curl, flags=re.DOTALL)
    assert len(blocks) == 2
    user = f"alice-{uuid.uuid4().hex[:8]}"
    key_file = tmp_path / "admin.key"
    key_file.write_text(ADMIN_KEY)
    script = "set -euo pipefail\n" + "\n".join(blocks)
    script = (
        script.replace("http://127.0.0.1:8000", api_url)
        .replace("~/.engram/admin.key", str(key_file))
        .replace("alice", user)
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answers, rest = [], done.stdout.strip()
    while rest:  # curl -s prints the JSON answers one after the other
        answer, end = json.JSONDecoder().raw_decode(rest)
        answers.append(answer)
        rest = rest[end:].strip()
    added, found, documents = answers
    assert {m["status"] for m in added["memories"]} == {"ready"}
    assert found["results"][0]["content"] == "Alice drinks her coffee black, no sugar."
    assert documents["batch_id"] and documents["documents"][0]["title"] == "notes.md"


_openapi = functools.cache(served_openapi)


# The client's types are its own (it installs without the server): each answer must keep the
# shape the server declares in its OpenAPI document, under the same name. (RateLimit is read
# from headers, not JSON.)
NOT_ANSWERS = [*SENT, "Health", "RateLimit"]
ANSWERS = [t for name in types.__all__ if isinstance(t := getattr(types, name), type)
           and issubclass(t, msgspec.Struct) and t.__name__ not in NOT_ANSWERS]  # fmt: skip


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda t: t.__name__)
def test_each_answer_type_has_the_fields_the_server_declares(answer):
    declared = _openapi()["components"]["schemas"][answer.__name__]
    fields = {f.encode_name: f for f in msgspec.structs.fields(answer)}
    assert set(fields) == set(declared["properties"])
    # what the server may leave out, the client must not require
    optional = set(declared["properties"]) - set(declared.get("required", []))
    assert {name for name in optional if fields[name].required} == set()


SENT_AS = [("MemoryIn", "MemoryIn"), ("DocumentIn", "DocumentIn"), ("MessageIn", "MessageIn"),
           ("Weights", "WeightsIn")]  # fmt: skip


@pytest.mark.parametrize(("sent", "schema"), SENT_AS)
def test_what_the_client_sends_is_what_the_server_reads(sent, schema):
    declared = _openapi()["components"]["schemas"][schema]
    fields = {f.encode_name for f in msgspec.structs.fields(getattr(types, sent))}
    assert fields <= set(declared["properties"])
    assert set(declared.get("required", [])) <= fields
