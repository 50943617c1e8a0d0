"""API keys: created once, stored as a digest, scoped, revoked at once, one 401 for all."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import pytest
from support.api import ADMIN, parts_of

TOKEN_RE = re.compile(r"^egm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_key(client: Any, user_id: str | None = None) -> dict[str, Any]:
    body = {} if user_id is None else {"user_id": user_id}
    answer = client.post("/v1/keys", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def memories_url(user_id: str) -> str:
    return f"/v1/users/{user_id}/memories"


def listed(client: Any, key_id: str) -> dict[str, Any]:
    """The key as the listing shows it, following pages until it is found."""
    params: dict[str, Any] = {}
    while True:
        answer = client.get("/v1/keys", params=params, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found = [k for k in page["keys"] if k["id"] == key_id]
        if found or page["next_cursor"] is None:
            return found[0]
        params["cursor"] = page["next_cursor"]


def fresh_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def test_create_answers_201_with_a_long_random_key(client):
    user = fresh_user()
    first, second = create_key(client, user), create_key(client, user)
    assert {"id", "key", "user_id", "created_at"} <= set(first)
    assert first["user_id"] == user
    assert TOKEN_RE.match(first["key"]), first["key"]
    assert first["key"] != second["key"] and first["id"] != second["id"]
    uuid.UUID(first["id"])


def test_listing_never_shows_the_secret(client):
    created = create_key(client, fresh_user())
    answer = client.get("/v1/keys", headers=ADMIN)
    assert answer.status_code == 200
    assert created["key"] not in answer.text
    assert parts_of(created["key"])[1] not in answer.text
    assert listed(client, created["id"])["user_id"] == created["user_id"]


def test_the_listing_pages_newest_first(client):
    made = [create_key(client, fresh_user())["id"] for _ in range(3)]
    first = client.get("/v1/keys", params={"limit": 2}, headers=ADMIN).json()
    assert [k["id"] for k in first["keys"]] == made[:0:-1]
    following = {"limit": 2, "cursor": first["next_cursor"]}
    second = client.get("/v1/keys", params=following, headers=ADMIN).json()
    assert second["keys"][0]["id"] == made[0]


def test_following_the_cursor_lists_every_key_once(client, db):
    create_key(client, fresh_user())
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 7}
    while True:
        page = client.get("/v1/keys", params=params, headers=ADMIN).json()
        assert len(page["keys"]) <= 7
        seen += [k["id"] for k in page["keys"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    (count,) = db.execute("SELECT count(*) FROM api_keys").fetchone()
    assert len(seen) == len(set(seen)) == count


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 1001}, {"cursor": "not-a-cursor"}, {"cursor": "x" * 513}]
)
def test_a_bad_limit_or_cursor_is_a_422(client, params):
    answer = client.get("/v1/keys", params=params, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_input"


def test_the_table_holds_only_a_digest(client, db):
    created = create_key(client, fresh_user())
    secret = parts_of(created["key"])[1]
    (row,) = db.execute("SELECT t::text FROM api_keys t WHERE id = %s", [created["id"]]).fetchone()
    assert secret not in row and created["key"] not in row
    assert secret.encode().hex() not in row  # not even as raw bytes in a bytea column


def test_user_key_cannot_manage_keys(client, new_user):
    _, headers = new_user()
    some_key = create_key(client, fresh_user())["id"]
    assert client.post("/v1/keys", json={}, headers=headers).status_code == 403
    assert client.post("/v1/keys", json={"user_id": "x"}, headers=headers).status_code == 403
    assert client.get("/v1/keys", headers=headers).status_code == 403
    assert client.delete(f"/v1/keys/{some_key}", headers=headers).status_code == 403
    assert listed(client, some_key)["revoked_at"] is None


def test_revoke_takes_effect_at_once(client):
    user = fresh_user()
    created = create_key(client, user)
    headers = bearer(created["key"])
    assert client.get(memories_url(user), headers=headers).status_code == 200
    assert client.delete(f"/v1/keys/{created['id']}", headers=ADMIN).status_code == 204
    assert client.get(memories_url(user), headers=headers).status_code == 401
    assert listed(client, created["id"])["revoked_at"] is not None


def test_revoking_an_unknown_key_is_404(client):
    answer = client.delete(f"/v1/keys/{uuid.uuid4()}", headers=ADMIN)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def unknown_well_formed_key() -> str:
    return f"egm_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def wrong_secret(token: str) -> str:
    """The same lookup part as a real key, with another secret."""
    return f"egm_{parts_of(token)[0]}_{secrets.token_urlsafe(32)}"


def revoked_key(client: Any, user: str) -> str:
    created = create_key(client, user)
    assert client.delete(f"/v1/keys/{created['id']}", headers=ADMIN).status_code == 204
    return str(created["key"])


BAD_CREDENTIALS = [
    pytest.param(lambda client, user: {}, id="no-header"),
    pytest.param(lambda client, user: {"Authorization": ""}, id="empty-header"),
    pytest.param(lambda client, user: {"Authorization": "Bearer"}, id="bearer-without-key"),
    pytest.param(lambda client, user: {"Authorization": "Basic YWxpY2U6cHc="}, id="basic-scheme"),
    pytest.param(
        lambda client, user: {"Authorization": create_key(client, user)["key"]},
        id="key-without-scheme",
    ),
    pytest.param(lambda client, user: bearer("not-a-key"), id="malformed-key"),
    pytest.param(lambda client, user: bearer(unknown_well_formed_key()), id="unknown-key"),
    pytest.param(
        lambda client, user: bearer(wrong_secret(create_key(client, user)["key"])),
        id="known-lookup-wrong-secret",
    ),
    pytest.param(lambda client, user: bearer(revoked_key(client, user)), id="revoked-key"),
]


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS)
def test_every_bad_credential_gets_the_same_401(client, credentials):
    user = fresh_user()
    baseline = client.get(memories_url(user))
    answer = client.get(memories_url(user), headers=credentials(client, user))
    assert answer.status_code == 401
    assert answer.json() == baseline.json()
    assert set(answer.json()["error"]) >= {"code", "message"}


def test_admin_key_from_the_api_acts_on_any_user(client):
    created = create_key(client)
    assert created["user_id"] is None
    headers = bearer(created["key"])
    for user in (fresh_user(), fresh_user()):
        assert client.get(memories_url(user), headers=headers).status_code == 200
    assert client.get("/v1/keys", headers=headers).status_code == 200


def test_last_used_at_is_set_after_use(client, db):
    user = fresh_user()
    created = create_key(client, user)
    assert listed(client, created["id"])["last_used_at"] is None
    assert client.get(memories_url(user), headers=bearer(created["key"])).status_code == 200
    assert listed(client, created["id"])["last_used_at"] is not None
    row = db.execute("SELECT last_used_at FROM api_keys WHERE id = %s", [created["id"]]).fetchone()
    assert row[0] is not None


def test_user_key_on_another_users_route_is_403(client, new_user):
    _, headers = new_user()
    other, _ = new_user()
    for method in ("GET", "POST"):
        body = {"memories": [{"content": "x"}]} if method == "POST" else None
        answer = client.request(method, memories_url(other), json=body, headers=headers)
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "forbidden"


INVALID_USER_IDS = [
    pytest.param("", id="empty"),
    pytest.param("u" * 129, id="129-chars"),
    pytest.param("a b", id="space"),
    pytest.param("a/b", id="slash"),
    pytest.param("üser", id="unicode"),
    pytest.param("a\u0000b", id="nul"),
    pytest.param(1, id="not-a-string"),
    pytest.param(
        "alice\n",
        id="trailing-newline",
    ),
]


@pytest.mark.parametrize("user_id", INVALID_USER_IDS)
def test_create_with_invalid_user_id_is_422_and_stores_nothing(client, db, user_id):
    before = db.execute("SELECT count(*) FROM api_keys").fetchone()
    answer = client.post("/v1/keys", json={"user_id": user_id}, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_input"
    assert db.execute("SELECT count(*) FROM api_keys").fetchone() == before


def test_unknown_field_in_create_is_422(client):
    answer = client.post("/v1/keys", json={"user_id": "alice", "scope": "all"}, headers=ADMIN)
    assert answer.status_code == 422
