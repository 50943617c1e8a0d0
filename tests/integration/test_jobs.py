"""Dead letters: admins list failed items and send them back for another try."""

from __future__ import annotations

import pytest
from support.api import ADMIN, add_memories, fail, search
from support.processes import wait_until


@pytest.mark.usefixtures("worker")
def test_failed_jobs_are_listed_and_retried(client, new_user, db):
    user, headers = new_user()
    memory = add_memories(client, user, headers, ["Dana collects vinyl records."])[0]
    fail(db, user, memory["id"])
    assert search(client, user, headers, query="music", k=5) == []  # failed: not searchable

    listed = client.get("/v1/jobs/failed", params={"limit": 1000}, headers=ADMIN).json()["jobs"]
    mine = [job for job in listed if job["user_id"] == user]
    assert [(j["id"], j["error"], j["type"]) for j in mine] == [
        (memory["id"], "provider said 400: bad input", "memory")
    ]

    retried = client.post(f"/v1/jobs/{memory['id']}/retry", headers=ADMIN)
    assert retried.status_code == 202 and retried.json()["retried"] == 1
    url = f"/v1/users/{user}/memories/{memory['id']}"
    wait_until(lambda: client.get(url, headers=headers).json()["status"] == "ready", what="retry")
    assert search(client, user, headers, query="music", k=5)[0]["id"] == memory["id"]
    assert client.post(f"/v1/jobs/{memory['id']}/retry", headers=ADMIN).status_code == 404


def test_failed_jobs_page_with_a_cursor(client, new_user, db):
    user, headers = new_user()
    body = {"memories": [{"content": f"note {i}"} for i in range(3)]}
    stored = client.post(f"/v1/users/{user}/memories", json=body, headers=headers).json()
    for memory in stored["memories"]:
        fail(db, user, memory["id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs/failed", params=params, headers=ADMIN).json()
        seen += [job["id"] for job in page["jobs"] if job["user_id"] == user]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(m["id"] for m in stored["memories"])


def test_jobs_routes_are_for_admins_only(client, new_user):
    _, headers = new_user()
    assert client.get("/v1/jobs/failed", headers=headers).status_code == 403
    retry = client.post("/v1/jobs/00000000-0000-0000-0000-000000000000/retry", headers=headers)
    assert retry.status_code == 403
    assert client.get("/v1/jobs/failed").status_code == 401
