"""An erasure and writes of the same user, at the same time, never leave a ghost: every
memory left has its embedding job, reads back, and its text can be written again."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from support.api import ADMIN

pytestmark = pytest.mark.usefixtures("worker")


def test_an_erasure_racing_writes_leaves_whole_memories_or_none(api_url, db):
    user = f"race-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=api_url, timeout=60) as http:
        key = http.post("/v1/keys", json={"user_id": user}, headers=ADMIN).json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    written: list[str] = []
    errors: list[str] = []

    def write(worker: int) -> None:
        with httpx.Client(base_url=api_url, timeout=60, headers=headers) as http:
            for n in range(12):
                texts = [f"writer {worker} note {n}.{i}" for i in range(4)]
                answer = http.post(
                    f"/v1/users/{user}/memories",
                    json={"memories": [{"content": t} for t in texts]},
                )
                if answer.status_code != 202:
                    errors.append(answer.text)
                written.extend(texts)

    def erase() -> None:
        with httpx.Client(base_url=api_url, timeout=60, headers=headers) as http:
            for _ in range(6):
                answer = http.delete(f"/v1/users/{user}")
                if answer.status_code != 200:
                    errors.append(answer.text)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=erase))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    ghosts = db.execute(
        "SELECT m.id FROM memories m WHERE m.user_id = %s AND NOT EXISTS ("
        " SELECT 1 FROM embed_state e"
        " WHERE e.user_id = m.user_id AND e.item_id = m.id AND e.space = m.space)",
        [user],
    ).fetchall()
    assert ghosts == []
    with httpx.Client(base_url=api_url, timeout=60, headers=headers) as http:
        for (memory_id,) in db.execute("SELECT id FROM memories WHERE user_id = %s", [user]):
            assert http.get(f"/v1/users/{user}/memories/{memory_id}").status_code == 200
        again = http.post(
            f"/v1/users/{user}/memories", json={"memories": [{"content": t} for t in written]}
        )
        assert again.status_code == 202, again.text
