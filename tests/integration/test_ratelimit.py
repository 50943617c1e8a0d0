"""Rate limits per key, in Redis: shared by every API process, heavier for model work, told
to the client on every answer (RateLimit-* headers), and an import may borrow from the key's
next minutes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
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
RATELIMIT = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
NDJSON = {"Content-Type": "application/x-ndjson"}


@contextlib.contextmanager
def api_processes(settings, embedder, *, limit: int) -> Iterator[list[TestClient[Any]]]:
    """Two app instances over the same Redis, as two API processes would be."""
    limited = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, rate_limit_per_minute=limit)
    )
    apps = [create_app(limited, embedders={MINILM_384.name: embedder}) for _ in range(2)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        yield [first, second]


@pytest.fixture
def two_api_processes(settings, embedder):
    with api_processes(settings, embedder, limit=LIMIT) as processes:
        in_one_window()  # a test's charges all fall in one window: none starts afresh midway
        yield processes


def in_one_window(seconds: float = 10) -> None:
    """Waits, if need be, until ``seconds`` are left in this window."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < seconds:
        time.sleep(left + 0.5)


def quota(answer: Any) -> tuple[int, int, int]:
    """An answer's RateLimit-Limit, -Remaining and -Reset."""
    limit, left, reset = (int(answer.headers[name]) for name in RATELIMIT)
    return limit, left, reset


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
    assert limiter._windows[key].leased == 10
    assert redis_total(servers, key) == 16 + 10


# What is left, told on every answer to a key (RateLimit-* headers).


def test_every_answer_to_a_key_says_what_is_left_of_its_limit(two_api_processes, new_user):
    """Under 50 units a minute nothing is leased, so each figure is the count in Redis: exact
    across processes. Errors after authentication say it too, and a search (charged while
    it runs, on its hot path or not) as well."""
    first, second = two_api_processes
    user, headers = new_user()
    other, _ = new_user()
    url = f"/v1/users/{user}/memories"
    for n in range(4):
        answer = (first if n % 2 else second).get(url, headers=headers)
        limit, left, reset = quota(answer)
        assert (answer.status_code, limit, left) == (200, LIMIT, LIMIT - 1 - n)
        assert 1 <= reset <= WINDOW_SECONDS + 1
    forbidden = first.get(f"/v1/users/{other}/memories", headers=headers)
    assert (forbidden.status_code, quota(forbidden)[1]) == (403, 5)
    missing = second.get(f"{url}/{uuid.uuid4()}", headers=headers)
    assert (missing.status_code, quota(missing)[1]) == (404, 4)
    search = f"/v1/users/{user}/search"
    invalid = first.post(search, json={"vector": [1.0]}, headers=headers)
    assert (invalid.status_code, quota(invalid)[1]) == (422, 3)
    found = first.post(search, json={"vector": [0.1] * 384}, headers=headers)
    assert (found.status_code, quota(found)[1]) == (200, 2)
    # the search route charges itself as it runs: what is refused before it runs counts too
    elsewhere = second.post(f"/v1/users/{other}/search", json={"k": 1}, headers=headers)
    assert (elsewhere.status_code, quota(elsewhere)[1]) == (403, 1)
    undecoded = second.post(search, json={"vector": [0.1] * 384, "k": 0}, headers=headers)
    assert (undecoded.status_code, quota(undecoded)[1]) == (422, 0)
    refused = second.get(url, headers=headers)
    assert refused.status_code == 429
    limit, left, reset = quota(refused)
    assert (limit, left) == (LIMIT, 0)
    assert abs(reset - int(refused.headers["retry-after"])) <= 1
    # no key, or a bad one: no key to tell about
    for bad in ({}, {"Authorization": "Bearer egm_0000000000000000_" + "x" * 43}):
        unknown = first.get(url, headers=bad)
        assert unknown.status_code == 401
        assert not set(RATELIMIT) & set(unknown.headers)


def test_with_leases_the_figure_counts_down_by_one_and_other_processes_leases_are_spent(
    settings, embedder, new_user
):
    """At 500 a minute a process leases 10 units at a time: its figure still counts down one
    by one, with one trip to Redis a lease. What another process holds leased and has not
    spent is counted as spent: it cannot be spent here."""
    user, headers = new_user()
    url = f"/v1/users/{user}/memories"
    with api_processes(settings, embedder, limit=500) as (first, second):
        calls = counted_calls(first.app.state.runtime.limiter)
        in_one_window()
        lefts = [quota(first.get(url, headers=headers))[1] for _ in range(25)]
        assert lefts == list(range(499, 474, -1))
        assert calls[0] == 3  # 1 charged + 10 leased, three times: 33 counted in Redis
        # here: 26 spent, 8 of them leased by the first process and not spent
        assert quota(second.get(url, headers=headers))[1] == 500 - 26 - 8


def test_no_limit_no_headers(settings, embedder, new_user):
    user, headers = new_user()
    with api_processes(settings, embedder, limit=0) as (unlimited, _):
        listed = unlimited.get(f"/v1/users/{user}/memories", headers=headers)
        found = unlimited.post(
            f"/v1/users/{user}/search", json={"vector": [0.1] * 384}, headers=headers
        )
        for answer in (listed, found):
            assert answer.status_code == 200
            assert not set(RATELIMIT) & set(answer.headers)


# An import is charged whole, borrowing from the key's next minutes.


def import_of(count: int) -> bytes:
    """An export of ``count`` memories without vectors: each needs embedding."""
    lines: list[dict[str, Any]] = [
        {
            "type": "header",
            "format": "engram.export",
            "version": 1,
            "user_id": "someone",
            "exported_at": "2026-01-01T00:00:00Z",
            "spaces": [],
        },
        *(
            {
                "type": "memory",
                "id": str(uuid.uuid4()),
                "content": f"memory {n}",
                "space": "minilm-384",
            }
            for n in range(count)
        ),
        {"type": "end", "counts": {"memory": count}},
    ]
    return b"".join(msgspec.json.encode(line) + b"\n" for line in lines)


def test_an_import_larger_than_the_limit_succeeds_and_the_next_one_waits(
    two_api_processes, new_user, db
):
    """25 items to embed at 10 units a minute: 1 + 25 = 26 units spend this minute and the
    next, and 6 of the one after. A second import, or anything else, waits until then."""
    first, second = two_api_processes
    user, headers = new_user()
    in_one_window(20)
    url = f"/v1/users/{user}/import"
    imported = first.post(url, content=import_of(25), headers={**headers, **NDJSON})
    assert imported.status_code == 200, imported.text
    assert imported.json()["queued"] == 25
    limit, left, reset = quota(imported)
    assert (limit, left) == (LIMIT, 0)
    assert reset > WINDOW_SECONDS  # the next minute is spent too
    again = second.post(url, content=import_of(1), headers={**headers, **NDJSON})
    assert again.status_code == 429, again.text
    assert again.json()["error"]["code"] == "rate_limited"
    assert WINDOW_SECONDS < int(again.headers["retry-after"]) <= 2 * WINDOW_SECONDS + 1
    assert second.get(f"/v1/users/{user}/memories", headers=headers).status_code == 429
    count = db.execute("SELECT count(*) FROM memories WHERE user_id = %s", [user]).fetchone()
    assert count == (25,)


def test_an_import_borrows_whole_minutes_and_they_open_spent(servers):
    """The limiter across windows, on a clock of its own: what an import borrowed is spent
    in the next windows, and a key spends its limit a minute on average, imports included."""
    now = [1_000_000 * WINDOW_SECONDS + 1.0]
    limiter = RateLimiter(servers.redis_url, per_minute=10, clock=lambda: now[0])
    key = f"k-{uuid.uuid4()}"

    async def admitted(count: int) -> int:
        taken = 0
        for _ in range(count):
            with contextlib.suppress(RateLimited):
                await limiter.charge(key)
                taken += 1
        return taken

    async def run() -> None:
        await limiter.charge(key)  # the import's request
        await limiter.charge_borrowing(key, 25)  # 26: this window, the next, 6 of the third
        assert limiter.quota(key) == (0, 2 * WINDOW_SECONDS)
        with pytest.raises(RateLimited) as refused:
            await limiter.charge_borrowing(key, 1)
        assert refused.value.retry_after == 2 * WINDOW_SECONDS
        now[0] += WINDOW_SECONDS  # the next window opens spent
        assert limiter.quota(key) == (0, WINDOW_SECONDS)
        assert await admitted(3) == 0
        now[0] += WINDOW_SECONDS  # the third: 6 of 10 spent
        assert await admitted(6) == 4
        now[0] += WINDOW_SECONDS  # then the whole limit again
        assert await admitted(12) == 10
        await limiter.charge_borrowing(key, 0)  # nothing to embed: nothing charged
        await limiter.close()

    asyncio.run(run())
