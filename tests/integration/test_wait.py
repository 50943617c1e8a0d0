"""Writes that wait (``"wait": true``): every write that embeds can wait for it (memories,
their edits, documents, uploads, messages), and a wait ends as soon as its client is gone."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from support.api import ADMIN, search
from support.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")


def test_an_edit_that_waits_answers_once_the_new_text_is_embedded(client, new_user):
    user, headers = new_user()
    added = client.post(
        f"/v1/users/{user}/memories",
        json={"memories": [{"content": "Bob plays chess on Sundays."}], "wait": True},
        headers=headers,
    )
    assert added.status_code == 200 and added.json()["memories"][0]["status"] == "ready"
    url = f"/v1/users/{user}/memories/{added.json()['memories'][0]['id']}"
    edited = client.patch(
        url, json={"content": "Bob goes sailing on Sundays.", "wait": True}, headers=headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["status"] == "ready"
    assert edited.json()["content"] == "Bob goes sailing on Sundays."
    top = search(client, user, headers, query="a boat on the sea", k=1)[0]
    assert top["content"] == "Bob goes sailing on Sundays."
    # without content nothing is embedded: the wait is over at once
    same = client.patch(url, json={"importance": 0.5, "wait": True}, headers=headers)
    assert same.status_code == 200 and same.json()["status"] == "ready"


def test_documents_and_uploads_that_wait_answer_ready(client, new_user):
    user, headers = new_user()
    posted = client.post(
        f"/v1/users/{user}/documents",
        json={"documents": [{"content": "The boiler is serviced every October."}], "wait": True},
        headers=headers,
    )
    assert posted.status_code == 200, posted.text
    assert [d["status"] for d in posted.json()["documents"]] == ["ready"]
    uploaded = client.post(
        f"/v1/users/{user}/documents/files",
        files={"files": ("notes.md", b"# Garden\n\nThe roses need water daily.", "text/markdown")},
        data={"wait": "true"},
        headers=headers,
    )
    assert uploaded.status_code == 200, uploaded.text
    assert [d["status"] for d in uploaded.json()["documents"]] == ["ready"]
    hits = search(client, user, headers, query="when is the boiler serviced?", k=1)
    assert "boiler" in hits[0]["content"]


def test_messages_that_wait_answer_once_their_memories_are_embedded(client, new_user):
    user, headers = new_user()
    client.post(f"/v1/users/{user}/sessions", json={"id": "trip"}, headers=headers)
    turns = [
        {"role": "user", "content": "I am flying to Porto on the ninth of May."},
        {"role": "assistant", "content": "Noted: Porto, the ninth of May."},
    ]
    added = client.post(
        f"/v1/users/{user}/sessions/trip/messages",
        json={"messages": turns, "wait": True},
        headers=headers,
    )
    assert added.status_code == 201, added.text
    ids = {m["memory_id"] for m in added.json()["messages"]}
    for memory_id in ids:
        memory = client.get(f"/v1/users/{user}/memories/{memory_id}", headers=headers).json()
        assert memory["status"] == "ready"
    hits = search(client, user, headers, query="when is the flight?", k=2)
    assert {h["id"] for h in hits} == ids


GONE = (
    "engram_http_request_duration_seconds_count"
    '{method="POST",route="/v1/users/{user_id}/memories",status="499"} '
)


def _gone_series(text: str) -> float:
    """How many POST memories requests ended with their client gone, by /metrics."""
    found = [line for line in text.splitlines() if line.startswith(GONE)]
    return float(found[0].removeprefix(GONE)) if found else 0.0


def test_a_wait_ends_when_its_client_is_gone(api_url):
    with httpx.Client(base_url=api_url, timeout=30) as http:
        user = "gone-" + str(time.time_ns())
        key = http.post("/v1/keys", json={"user_id": user}, headers=ADMIN).json()["key"]
        before = _gone_series(http.get("/metrics", headers=ADMIN).text)
        # far more than the worker embeds in the seconds the test gives it
        items = [{"content": f"{n} " + "a long memory to embed " * 60} for n in range(1000)]
        body = httpx.Request("POST", "/", json={"memories": items, "wait": True}).content
        host, port = api_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                (
                    f"POST /v1/users/{user}/memories HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            time.sleep(2)  # written, now waiting

        def counted() -> bool:
            return _gone_series(http.get("/metrics", headers=ADMIN).text) > before

        wait_until(counted, timeout=10, what="the wait to end as its client left")
        listed = http.get(
            f"/v1/users/{user}/memories",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert listed.status_code == 200 and listed.json()["memories"]  # accepted is kept
        assert http.delete(f"/v1/users/{user}", headers=ADMIN).status_code == 200
