"""Rate limits per key, in Redis: shared by every API process, heavier for model work."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from models.embedding.spaces import MINILM_384
from models.errors import RateLimited
from service.http.app import create_app
from service.http.ratelimit import WINDOW_SECONDS, RateLimiter

LIMIT = 10


@pytest.fixture
def two_api_processes(settings, embedder):
    """Two app instances over the same Redis, as two API processes would be."""
    limited = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, rate_limit_per_minute=LIMIT)
    )
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


# Leases: a busy key asks Redis once per lease, and no limit is ever exceeded.


def charges(limiters: list[RateLimiter], key: str, count: int, cost: int = 1) -> int:
    """How many of ``count`` charges (made in turns through ``limiters``) were admitted."""

    async def run() -> int:
        admitted = 0
        for n in range(count):
            try:
                await limiters[n % len(limiters)].charge(key, cost)
                admitted += 1
            except RateLimited:
                pass
        return admitted

    return asyncio.run(run())


def counted_calls(limiter: RateLimiter) -> list[int]:
    """Count the limiter's calls to Redis."""
    calls = [0]
    script = limiter._charge

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await script(*args, **kwargs)

    limiter._charge = counting  # type: ignore[assignment]
    return calls


def redis_total(servers, key: str) -> int:
    client = redis.Redis.from_url(servers.redis_url)
    window = int(time.time() // WINDOW_SECONDS)
    total = int(client.get(f"engram:ratelimit:{key}:{window}") or 0)
    client.close()
    return total


def test_one_process_gets_exactly_its_limit_asking_redis_once_a_lease(servers):
    limiter, key = RateLimiter(servers.redis_url, per_minute=100), f"k-{uuid.uuid4()}"
    calls = counted_calls(limiter)
    if time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 5:
        time.sleep(6)  # the whole test in one window
    assert charges([limiter], key, 150) == 100
    assert calls[0] <= 100 // (1 + limiter.lease_units) + 50 + 1  # leased, then each refusal
    assert redis_total(servers, key) == 150  # refused charges count too


def test_processes_sharing_a_key_never_exceed_its_limit(servers):
    limiters = [RateLimiter(servers.redis_url, per_minute=100) for _ in range(3)]
    key = f"k-{uuid.uuid4()}"
    if time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 5:
        time.sleep(6)
    admitted = charges(limiters, key, 200)
    # what the others leased and did not spend is lost to each, never given twice
    assert 100 - 3 * limiters[0].lease_units <= admitted <= 100


def test_a_costly_charge_spends_what_is_left_of_a_lease(servers):
    limiter, key = RateLimiter(servers.redis_url, per_minute=500), f"k-{uuid.uuid4()}"
    if time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 5:
        time.sleep(6)
    assert limiter.lease_units == 10
    # 4 from Redis (+10 leased), 4 and 4 from the lease, then its last 2 and 2 from Redis
    # (+10 leased again)
    assert charges([limiter], key, 4, cost=4) == 4
    assert limiter._leases[key].units == 10
    assert redis_total(servers, key) == 16 + 10
