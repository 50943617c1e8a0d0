"""The audit log records admin actions (who, what, when) and only admins read it."""

from __future__ import annotations

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
    assert all(e["actor"] == "bootstrap" and e["details"]["user_id"] == "audited-user"
               for e in entries)  # fmt: skip
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
    assert (entry["action"], entry["actor"], entry["details"]) == (
        "job.retry",
        admin_key["id"],
        {"user_id": user, "space": "minilm-384"},
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
