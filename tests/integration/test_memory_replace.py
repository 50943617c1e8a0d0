"""A memories batch that replaces and deletes (``replace``, ``delete``): a known id takes new
content, fields and TTL, expired ids are written again, memories are deleted, all in the
batch's one transaction; a bad item or a clash changes nothing. API in-process, a real
worker, real Postgres and Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.api import search
from support.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")


def post(client: Any, user: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return client.post(f"/v1/users/{user}/memories", json=body, headers=headers)


def write(client: Any, user: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = post(client, user, headers, {"wait": True, **body})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def contents(db: Any, user: str) -> dict[str, tuple[str, Any, Any]]:
    rows = db.execute(
        "SELECT id::text, content, metadata, expires_at IS NOT NULL FROM memories "
        "WHERE user_id = %s",
        [user],
    ).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def test_replace_gives_a_known_id_the_new_content_and_fields(client, new_user, db):
    user, headers = new_user()
    kept, changed = str(uuid.uuid4()), str(uuid.uuid4())
    write(
        client,
        user,
        headers,
        memories=[
            {"id": kept, "content": "Dana keeps bees."},
            {
                "id": changed,
                "content": "Dana plays chess.",
                "metadata": {"v": 1},
                "ttl_seconds": 600,
            },
        ],
    )
    created = client.get(f"/v1/users/{user}/memories/{changed}", headers=headers).json()
    answer = write(
        client,
        user,
        headers,
        replace=True,
        memories=[
            {"id": changed, "content": "Dana's invoice number is 4471.", "metadata": {"v": 2}},
            {"id": kept, "content": "Dana keeps bees.", "metadata": {"v": 9}},
        ],
    )
    assert [(m["id"], m["duplicate"], m["status"]) for m in answer["memories"]] == [
        (changed, False, "ready"),
        (kept, True, "ready"),
    ]
    assert answer["deleted"] == 0
    now = contents(db, user)
    assert now[changed] == ("Dana's invoice number is 4471.", {"v": 2}, False)  # TTL cleared
    assert now[kept] == ("Dana keeps bees.", {"v": 9}, False)
    replaced = client.get(f"/v1/users/{user}/memories/{changed}", headers=headers).json()
    assert replaced["created_at"] == created["created_at"]
    assert replaced["updated_at"] > created["updated_at"]
    top = search(client, user, headers, query="what is the invoice number?", k=1)[0]
    assert (top["id"], top["content"]) == (changed, "Dana's invoice number is 4471.")
    vectors = db.execute(
        "SELECT count(*) FROM vec_minilm_384 WHERE user_id = %s AND item_id = %s", [user, changed]
    ).fetchone()
    assert vectors == (1,)


def test_without_replace_other_content_is_still_a_conflict(client, new_user, db):
    user, headers = new_user()
    memory_id = str(uuid.uuid4())
    write(client, user, headers, memories=[{"id": memory_id, "content": "Eve likes tea."}])
    clash = {"memories": [{"id": memory_id, "content": "Eve likes coffee."}]}
    assert post(client, user, headers, clash).status_code == 409
    assert contents(db, user)[memory_id][0] == "Eve likes tea."


def test_replace_and_delete_are_one_transaction(client, new_user, db):
    user, headers = new_user()
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    write(
        client,
        user,
        headers,
        memories=[
            {"id": a, "content": "Finn owns a kayak."},
            {"id": b, "content": "Finn's sister is Gail."},
        ],
    )
    before = contents(db, user)
    bad_batches = [
        # the last item breaks a rule: nothing of the batch happens
        {"memories": [{"id": a, "content": "Finn sold his kayak."}, {"content": "\x00"}]},
        {"memories": [{"id": a, "content": "Finn sold his kayak."}, {"id": b, "content": " "}]},
        # an id written and deleted at once is refused before anything is done
        {"memories": [{"id": a, "content": "Finn sold his kayak."}], "delete": [a]},
    ]
    for bad in bad_batches:
        answer = post(client, user, headers, {"replace": True, "delete": [b], **bad})
        assert answer.status_code == 422, answer.text
        assert contents(db, user) == before
    answer = write(
        client,
        user,
        headers,
        replace=True,
        memories=[{"id": a, "content": "Finn sold his kayak."}, {"id": c, "content": "Finn rows."}],
        delete=[b, str(uuid.uuid4())],  # an unknown id is skipped
    )
    assert answer["deleted"] == 1
    assert {k: v[0] for k, v in contents(db, user).items()} == {
        a: "Finn sold his kayak.",
        c: "Finn rows.",
    }
    gone = db.execute(
        "SELECT count(*) FROM embed_state WHERE user_id = %s AND item_id = %s", [user, b]
    ).fetchone()
    assert gone == (0,)
    assert all(hit["id"] != b for hit in search(client, user, headers, query="sister", k=10))


def test_a_batch_may_only_delete(client, new_user, db):
    user, headers = new_user()
    memory_id = str(uuid.uuid4())
    write(client, user, headers, memories=[{"id": memory_id, "content": "Hal is tall."}])
    missing = post(client, user, headers, {"delete": [memory_id]})
    assert missing.status_code == 422 and "memories" in missing.text  # a batch lists its writes
    answer = post(client, user, headers, {"memories": [], "delete": [memory_id]})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"memories": [], "deleted": 1}
    assert contents(db, user) == {}
    empty = post(client, user, headers, {"memories": []})
    assert empty.status_code == 422
    assert "must not be empty" in empty.json()["error"]["message"]


def test_replace_writes_an_expired_id_again(client, new_user, db):
    user, headers = new_user()
    memory_id = str(uuid.uuid4())
    item = {"id": memory_id, "content": "Ivy's code is 1234.", "ttl_seconds": 600}
    write(client, user, headers, memories=[item])
    url = f"/v1/users/{user}/memories/{memory_id}"
    expire = "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = %s"
    for content in ("Ivy's code is 1234.", "Ivy's code is 9876."):  # the same, then other
        db.execute(expire, [memory_id])
        assert client.get(url, headers=headers).status_code == 404
        # until the worker's sweep deletes it, the expired row keeps its id: replace takes it
        again = {"memories": [{"id": memory_id, "content": content}], "replace": True}
        answer = post(client, user, headers, again)
        assert answer.status_code == 202, answer.text
        assert client.get(url, headers=headers).json()["expires_at"] is None
    wait_until(lambda: client.get(url, headers=headers).json()["status"] == "ready")
    assert client.get(url, headers=headers).json()["content"] == "Ivy's code is 9876."


def test_within_a_batch_the_last_write_of_an_id_wins(client, new_user, db):
    user, headers = new_user()
    memory_id = str(uuid.uuid4())
    write(client, user, headers, memories=[{"id": memory_id, "content": "Jo runs."}])
    answer = write(
        client,
        user,
        headers,
        replace=True,
        memories=[
            {"id": memory_id, "content": "Jo swims.", "metadata": {"n": 1}},
            {"id": memory_id, "content": "Jo runs.", "metadata": {"n": 2}},
        ],
    )
    assert [m["content"] for m in answer["memories"]] == ["Jo runs.", "Jo runs."]
    assert contents(db, user)[memory_id] == ("Jo runs.", {"n": 2}, False)
