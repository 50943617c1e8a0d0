"""The audit log records admin actions (who, what, when) and only admins read it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.api import ADMIN


def actions(client, limit: int = 50) -> list[dict]:
    answer = client.get("/v1/audit", params={"limit": limit}, headers=ADMIN)
    assert answer.status_code == 200
    return answer.json()["entries"]


def test_key_creation_and_revocation_are_audited(client):
    made = client.post("/v1/keys", json={"user_id": "audited-user"}, headers=ADMIN).json()
    assert client.delete(f"/v1/keys/{made['id']}", headers=ADMIN).status_code == 204
    entries = [e for e in actions(client) if e["target"] == made["id"]]
    assert [e["action"] for e in entries] == ["key.revoke", "key.create"]  # newest first
    assert all(e["actor"] == "bootstrap" and e["user_id"] == "audited-user" for e in entries)
    assert made["key"] not in str(entries)  # the secret is never logged


def test_retries_are_audited_with_the_acting_admin_key(client, new_user, db):
    admin_key = client.post("/v1/keys", json={}, headers=ADMIN).json()
    other_admin = {"Authorization": f"Bearer {admin_key['key']}"}
    user, headers = new_user()
    body = {"memories": [{"content": "to fail"}]}
    memory = client.post(f"/v1/users/{user}/memories", json=body, headers=headers).json()
    item = memory["memories"][0]["id"]
    db.execute(
        "UPDATE embed_state SET status = 'failed', last_error = 'x' WHERE item_id = %s", [item]
    )
    assert client.post(f"/v1/jobs/{item}/retry", headers=other_admin).status_code == 202
    entry = next(e for e in actions(client) if e["target"] == item)
    assert (entry["action"], entry["actor"], entry["user_id"], entry["details"]) == (
        "job.retry",
        admin_key["id"],
        user,
        {"space": "minilm-384"},
    )


def test_the_audit_log_pages_and_is_for_admins_only(client, new_user):
    for _ in range(3):
        client.post("/v1/keys", json={}, headers=ADMIN)
    first = client.get("/v1/audit", params={"limit": 2}, headers=ADMIN).json()
    second = client.get(
        "/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]}, headers=ADMIN
    ).json()
    assert first["entries"][1]["id"] > second["entries"][0]["id"]
    _, headers = new_user()
    assert client.get("/v1/audit", headers=headers).status_code == 403


def fresh_user() -> str:
    return f"audit-{uuid.uuid4().hex[:12]}"


def audit(client, **params: Any) -> list[dict]:
    answer = client.get("/v1/audit", params=params, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"]


@pytest.fixture
def acting(client) -> dict[str, Any]:
    """A fresh admin key that made keys for two users and revoked the first one's."""
    made = client.post("/v1/keys", json={}, headers=ADMIN).json()
    headers = {"Authorization": f"Bearer {made['key']}"}
    users = [fresh_user(), fresh_user()]
    keys = [client.post("/v1/keys", json={"user_id": u}, headers=headers).json() for u in users]
    assert client.delete(f"/v1/keys/{keys[0]['id']}", headers=headers).status_code == 204
    return {"actor": made["id"], "users": users, "keys": [k["id"] for k in keys]}


def test_the_log_filters_by_actor_action_and_user(client, acting):
    actor, (first, second), (key1, key2) = acting["actor"], acting["users"], acting["keys"]
    mine = audit(client, actor=actor)
    assert [(e["action"], e["target"], e["user_id"]) for e in mine] == [
        ("key.revoke", key1, first),
        ("key.create", key2, second),
        ("key.create", key1, first),
    ]
    assert {e["actor"] for e in mine} == {actor}
    assert [e["target"] for e in audit(client, actor=actor, action="key.revoke")] == [key1]
    assert [e["action"] for e in audit(client, user_id=first)] == ["key.revoke", "key.create"]
    assert [e["target"] for e in audit(client, user_id=second, action="key.create")] == [key2]
    assert audit(client, user_id=second, action="key.revoke") == []
    assert audit(client, actor=actor.upper()) == mine  # a key id in any case


def test_the_log_filters_by_time_since_inclusive_until_exclusive(client, acting):
    newest, middle, oldest = audit(client, actor=acting["actor"])
    since = [e["id"] for e in audit(client, actor=acting["actor"], since=middle["at"])]
    until = [e["id"] for e in audit(client, actor=acting["actor"], until=middle["at"])]
    assert since == [newest["id"], middle["id"]]
    assert until == [oldest["id"]]
    both = audit(client, actor=acting["actor"], since=oldest["at"], until=newest["at"])
    assert [e["id"] for e in both] == [middle["id"], oldest["id"]]


def test_filters_and_the_cursor_page_together(client, acting):
    params: dict[str, Any] = {"actor": acting["actor"], "limit": 1}
    pages = []
    while True:
        answer = client.get("/v1/audit", params=params, headers=ADMIN).json()
        pages.append([e["target"] for e in answer["entries"]])
        if answer["next_cursor"] is None:
            break
        params["cursor"] = answer["next_cursor"]
    key1, key2 = acting["keys"]
    assert pages == [[key1], [key2], [key1]]


def test_an_erasure_is_found_by_the_user_it_erased(client):
    user = fresh_user()
    written = client.post(
        f"/v1/users/{user}/memories", json={"memories": [{"content": "gone soon"}]}, headers=ADMIN
    )
    assert written.status_code == 202, written.text
    assert client.delete(f"/v1/users/{user}", headers=ADMIN).status_code == 200
    (entry,) = audit(client, user_id=user)
    assert (entry["action"], entry["target"], entry["user_id"]) == ("user.erase", user, user)
    assert entry["details"]["memories"] == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("action", "key.destroy"),
        ("actor", "not-a-key"),
        ("actor", "x" * 65),
        ("user_id", "a b"),
        ("user_id", "u" * 129),
        ("since", "yesterday"),
        ("since", "2026-01-01T00:00:00"),  # no offset: which time zone?
        ("until", "2026-13-01T00:00:00Z"),
    ],
)
def test_a_filter_value_that_cannot_match_is_a_422_naming_it(client, name, value):
    answer = client.get("/v1/audit", params={name: value}, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and name in error["message"], error
