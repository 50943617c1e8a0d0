"""Verified keys are remembered per API process, and a revocation still stops them at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from support.api import ADMIN, parts_of
from support.processes import wait_until

from models.embedding.spaces import MINILM_384
from models.store import keys
from models.types import Principal
from service.http.app import create_app
from service.http.keycache import MAX_KEYS, KeyCache
from service.http.notices import LISTENER_NAME
from service.http.runtime import Runtime

ALICE = Principal(key_id="k-alice", user_id="alice")


def runtime_of(client: TestClient[Any]) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


@pytest.fixture
def other_process(settings, embedder) -> Iterator[TestClient[Any]]:
    """A second API process on the same database, listening for key changes."""
    with TestClient(create_app(settings, embedders={MINILM_384.name: embedder})) as other:
        wait_until(lambda: runtime_of(other).keys.listening, timeout=10)
        yield other


@pytest.fixture
def user_key(client) -> Callable[[], tuple[str, str, dict[str, str]]]:
    def make() -> tuple[str, str, dict[str, str]]:
        user = f"user-{time.monotonic_ns()}"
        answer = client.post("/v1/keys", json={"user_id": user}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        created = answer.json()
        return user, created["id"], {"Authorization": f"Bearer {created['key']}"}

    return make


def remembered(client: TestClient[Any], headers: dict[str, str]) -> bool:
    token = headers["Authorization"].removeprefix("Bearer ")
    return runtime_of(client).keys.remembers(parts_of(token)[0])


def lists(client: TestClient[Any], user: str, headers: dict[str, str]) -> int:
    return client.get(f"/v1/users/{user}/memories", headers=headers).status_code


def test_a_key_revoked_in_one_process_stops_in_the_others(client, other_process, user_key):
    user, key_id, headers = user_key()
    assert lists(other_process, user, headers) == 200
    assert remembered(other_process, headers)
    assert lists(client, user, headers) == 200
    assert client.delete(f"/v1/keys/{key_id}", headers=ADMIN).status_code == 204
    assert lists(client, user, headers) == 401  # the revoking process: at once
    wait_until(lambda: not remembered(other_process, headers), timeout=5)
    assert lists(other_process, user, headers) == 401


def test_a_key_revoked_in_sql_stops_in_every_process(client, other_process, user_key, db):
    user, key_id, headers = user_key()
    for process in (client, other_process):
        assert lists(process, user, headers) == 200
    db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", [key_id])
    for process in (client, other_process):
        wait_until(lambda process=process: lists(process, user, headers) == 401, timeout=5)


def test_touching_last_used_at_forgets_nothing(other_process, user_key, db):
    user, key_id, headers = user_key()
    other_user, other_id, other_headers = user_key()
    for owner, auth in ((user, headers), (other_user, other_headers)):
        assert lists(other_process, owner, auth) == 200
    db.execute(
        "UPDATE api_keys SET last_used_at = now() - interval '1 hour' WHERE id = %s", [key_id]
    )
    # notices arrive in order: once the later revocation's has, the touch's would have too
    db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", [other_id])
    wait_until(lambda: not remembered(other_process, other_headers), timeout=5)
    assert remembered(other_process, headers)


def test_losing_the_listener_forgets_every_key_until_it_listens_again(other_process, user_key, db):
    user, key_id, headers = user_key()
    assert lists(other_process, user, headers) == 200
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        [LISTENER_NAME],
    )
    # a revocation whose notice nobody may hear: the key must not outlive it anywhere
    db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", [key_id])
    wait_until(lambda: not remembered(other_process, headers), timeout=5)
    assert lists(other_process, user, headers) == 401
    wait_until(lambda: runtime_of(other_process).keys.listening, timeout=10)
    other_user, _, other_headers = user_key()
    assert lists(other_process, other_user, other_headers) == 200
    assert remembered(other_process, other_headers)


def test_a_remembered_key_needs_its_own_secret(other_process, user_key):
    user, _, headers = user_key()
    assert lists(other_process, user, headers) == 200
    lookup, _ = parts_of(headers["Authorization"].removeprefix("Bearer "))
    forged = {"Authorization": f"Bearer egm_{lookup}_{'A' * 43}"}
    assert lists(other_process, user, forged) == 401
    assert lists(other_process, user, headers) == 200


def test_with_the_cache_off_every_request_asks_postgres(settings, embedder, user_key, db):
    off = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, key_cache_seconds=0.0)
    )
    with TestClient(create_app(off, embedders={MINILM_384.name: embedder})) as uncached:
        user, key_id, headers = user_key()
        assert lists(uncached, user, headers) == 200
        assert not remembered(uncached, headers)
        db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", [key_id])
        assert lists(uncached, user, headers) == 401


# The cache's own rules, with a counted fetch in place of Postgres.


class Fetches:
    """What Postgres would answer, counted; ``during`` runs while a fetch is under way."""

    def __init__(self, answer: Principal | None = ALICE) -> None:
        self.answer, self.count = answer, 0
        self.during: Callable[[], None] = lambda: None

    async def __call__(self, token: str) -> Principal | None:
        self.count += 1
        self.during()
        return self.answer


def listening_cache(seconds: float = 60, clock: Callable[[], float] = time.monotonic) -> KeyCache:
    cache = KeyCache(seconds, clock=clock)
    cache.listening = True  # as its listener sets it once LISTEN is in place
    return cache


def test_a_verified_key_is_asked_for_once_until_it_expires():
    now = [0.0]
    cache, fetch, token = listening_cache(60, clock=lambda: now[0]), Fetches(), keys.new_token()
    for _ in range(3):
        assert asyncio.run(cache.verify(token, fetch)) == ALICE
    assert fetch.count == 1
    now[0] = 61
    assert asyncio.run(cache.verify(token, fetch)) == ALICE
    assert fetch.count == 2


def test_refused_and_malformed_keys_are_never_remembered():
    cache, fetch = listening_cache(), Fetches(answer=None)
    token = keys.new_token()
    for _ in range(2):
        assert asyncio.run(cache.verify(token, fetch)) is None
    assert fetch.count == 2
    assert asyncio.run(cache.verify("egm_not_a_key", fetch)) is None
    assert fetch.count == 2  # malformed: refused without asking


def test_nothing_is_remembered_while_not_listening_or_when_disabled():
    for cache in (KeyCache(60), listening_cache(0)):
        fetch, token = Fetches(), keys.new_token()
        for _ in range(2):
            asyncio.run(cache.verify(token, fetch))
        assert fetch.count == 2


def test_a_notice_during_a_verification_keeps_it_from_being_remembered():
    cache, fetch, token = listening_cache(), Fetches(), keys.new_token()
    fetch.during = lambda: cache.forget(parts_of(token)[0])
    asyncio.run(cache.verify(token, fetch))
    fetch.during = lambda: None
    asyncio.run(cache.verify(token, fetch))
    asyncio.run(cache.verify(token, fetch))
    assert fetch.count == 2  # the first answer was not kept; the second was


def test_forgetting_one_key_keeps_the_others():
    cache, fetch = listening_cache(), Fetches()
    first, second = keys.new_token(), keys.new_token()
    for token in (first, second):
        asyncio.run(cache.verify(token, fetch))
    cache.forget(parts_of(first)[0])
    assert not cache.remembers(parts_of(first)[0]) and cache.remembers(parts_of(second)[0])
    cache.forget("")  # an empty notice (a TRUNCATE): every key
    assert not cache.remembers(parts_of(second)[0])


def test_the_cache_is_bounded():
    cache, fetch = listening_cache(), Fetches()

    async def verify_many() -> None:
        for _ in range(MAX_KEYS + 1):
            await cache.verify(keys.new_token(), fetch)

    asyncio.run(verify_many())
    assert fetch.count == MAX_KEYS + 1 and len(cache) <= MAX_KEYS
