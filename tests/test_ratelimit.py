"""Rate limits per key, in Redis: shared by every API process, heavier for model work."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import TestClient

from models.spaces import MINILM_384
from service.app import create_app

LIMIT = 10


@pytest.fixture
def two_api_processes(settings, embedder):
    """Two app instances over the same Redis, as two API processes would be."""
    limited = msgspec.structs.replace(settings, rate_limit_per_minute=LIMIT)
    apps = [create_app(limited, embedders={MINILM_384.name: embedder}) for _ in range(2)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        yield first, second


def test_the_limit_is_shared_across_processes_and_answers_429(two_api_processes, new_user):
    first, second = two_api_processes
    user, headers = new_user()
    url = f"/v1/users/{user}/memories"
    for n in range(LIMIT):
        assert (first if n % 2 else second).get(url, headers=headers).status_code == 200
    refused = first.get(url, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    _, other = new_user()  # another key has its own budget
    assert second.get("/v1/spaces", headers=other).status_code == 200


def test_a_vector_search_is_charged_while_it_runs(two_api_processes, new_user, embedder):
    """A search writes nothing, so it charges the limit alongside its statements rather than
    before them: still 1 a request, an invalid one included, and past the limit a 429."""
    first, _ = two_api_processes
    user, headers = new_user()
    url = f"/v1/users/{user}/search"
    vector = embedder.encode(["tea"])[0].tolist()
    assert first.post(url, json={"vector": [1.0], "k": 1}, headers=headers).status_code == 422
    for _ in range(LIMIT - 1):
        assert first.post(url, json={"vector": vector, "k": 1}, headers=headers).status_code == 200
    refused = first.post(url, json={"vector": vector, "k": 1}, headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"


def test_model_work_costs_more_and_a_refused_write_changes_nothing(two_api_processes, new_user, db):
    first, _ = two_api_processes
    user, headers = new_user()
    search = {"query": "anything", "k": 1}
    assert first.post(f"/v1/users/{user}/search", json=search, headers=headers).status_code == 200
    assert first.post(f"/v1/users/{user}/search", json=search, headers=headers).status_code == 200
    # 2 text queries cost 10: the budget is spent
    assert first.get(f"/v1/users/{user}/memories", headers=headers).status_code == 429
    writer, writer_headers = new_user()
    body = {"memories": [{"content": f"item {i}"} for i in range(LIMIT)]}
    refused = first.post(f"/v1/users/{writer}/memories", json=body, headers=writer_headers)
    assert refused.status_code == 429  # 1 for the request + 10 items > 10
    assert db.execute("SELECT count(*) FROM memories WHERE user_id = %s", [writer]).fetchone() == (
        0,
    )
