"""Requests without a valid key are limited per client address: past the limit, 429 for any
request from that address that carries no key its API process remembers, without a lookup
in Postgres; requests with valid keys are never counted."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
import redis
from litestar.testing import TestClient
from support.api import ADMIN
from support.processes import start_api, stop_process, wait_until

from models.embedding.spaces import MINILM_384
from service.http.app import create_app
from service.http.ratelimit import WINDOW_SECONDS

FAILURES = 3  # a minute, per address
PROXIES = "10.0.0.0/8"
UNKNOWN_KEY = {"Authorization": "Bearer egm_0000000000000000_" + "x" * 43}


@dataclass
class Guarded:
    client: TestClient[Any]
    peer: list[str]  # the address requests come from (the peer's, as the server sees it)
    lookups: list[int]  # keys looked up in Postgres

    def get(self, path: str, headers: dict[str, str]) -> Any:
        return self.client.get(path, headers=headers)

    def memories(self, headers: dict[str, str], user: str = "someone") -> Any:
        return self.get(f"/v1/users/{user}/memories", headers)


@pytest.fixture
def guarded(settings, embedder) -> Iterator[Guarded]:
    """An API process allowing FAILURES requests without a valid key a minute per address,
    trusting PROXIES' X-Forwarded-For, whose requests come from ``peer``."""
    server = msgspec.structs.replace(
        settings.server, failed_keys_per_minute=FAILURES, trusted_proxies=(PROXIES,)
    )
    app = create_app(
        msgspec.structs.replace(settings, server=server), embedders={MINILM_384.name: embedder}
    )
    peer = [fresh_address()]

    async def from_peer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["client"] = (peer[0], 40000)
        await app(scope, receive, send)

    with TestClient(from_peer) as client:  # type: ignore[arg-type]
        runtime = app.state.runtime
        wait_until(lambda: runtime.keys.listening, timeout=10)
        lookups = [0]
        across_users = runtime.across_users

        async def counted(work: Any, *args: Any, **kwargs: Any) -> Any:
            lookups[0] += 1
            return await across_users(work, *args, **kwargs)

        runtime.across_users = counted
        yield Guarded(client=client, peer=peer, lookups=lookups)


def fresh_address() -> str:
    """An address no other test counts failures for."""
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"


def failures(servers, address: str) -> int:
    client = redis.Redis.from_url(servers.redis_url)
    window = int(time.time() // WINDOW_SECONDS)
    count = int(client.get(f"engram:failedkeys:{address}:{window}") or 0)
    client.close()
    return count


def in_one_window(seconds: float = 10) -> None:
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < seconds:
        time.sleep(left + 0.5)


def test_past_the_limit_an_address_without_a_valid_key_waits(guarded, new_user):
    in_one_window()
    busy_user, busy = new_user()
    assert guarded.memories(busy, busy_user).status_code == 200  # remembered from now on
    for headers in ({}, {"Authorization": "Bearer nonsense"}, UNKNOWN_KEY):
        assert guarded.memories(headers).status_code == 401
    assert guarded.lookups == [2]  # the busy key and the unknown one
    new, new_headers = new_user()  # a valid key this process does not remember: waits too
    for user, headers in (("someone", {}), ("someone", UNKNOWN_KEY), (new, new_headers)):
        refused = guarded.memories(headers, user)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_SECONDS + 1
    assert guarded.lookups == [2]  # refused before any lookup
    # a key it remembers, and the configured admin key, are served as ever
    assert guarded.memories(busy, busy_user).status_code == 200
    assert guarded.get("/v1/keys", ADMIN).status_code == 200
    guarded.peer[0] = fresh_address()  # another address has its own count
    assert guarded.memories(UNKNOWN_KEY).status_code == 401


def test_requests_with_valid_keys_are_never_counted(guarded, new_user, servers):
    in_one_window()
    user, headers = new_user()
    for _ in range(2 * FAILURES):
        assert guarded.memories(headers, user).status_code == 200
    assert failures(servers, guarded.peer[0]) == 0
    for _ in range(FAILURES):
        assert guarded.memories(UNKNOWN_KEY).status_code == 401
    assert failures(servers, guarded.peer[0]) == FAILURES
    assert guarded.memories(headers, user).status_code == 200


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(guarded, servers):
    in_one_window()
    client, proxy = fresh_address(), "10.1.2.3"
    guarded.peer[0] = proxy
    forwarded = {"X-Forwarded-For": f"203.0.113.9, {client}, 10.9.9.9", **UNKNOWN_KEY}
    assert guarded.memories(forwarded).status_code == 401
    assert failures(servers, client) == 1  # the last hop that is not a trusted proxy
    assert failures(servers, proxy) == 0
    stranger = fresh_address()
    guarded.peer[0] = stranger
    assert guarded.memories({**forwarded, "X-Forwarded-For": client}).status_code == 401
    assert failures(servers, stranger) == 1  # its own header says nothing
    assert failures(servers, client) == 1


def test_a_real_server_counts_the_peer_whatever_x_forwarded_for_says(servers):
    """uvicorn believes X-Forwarded-For from a local peer unless told not to: ``engram api``
    tells it not to, so a local client cannot pass itself off as another address."""
    process, api_url = start_api(servers, ENGRAM_FAILED_KEYS_PER_MINUTE="100")
    try:
        in_one_window()
        spoofed = fresh_address()
        before = failures(servers, "127.0.0.1")
        answer = httpx.get(
            f"{api_url}/v1/users/someone/memories",
            headers={"X-Forwarded-For": spoofed, **UNKNOWN_KEY},
        )
    finally:
        stop_process(process)
    assert answer.status_code == 401
    assert failures(servers, spoofed) == 0
    assert failures(servers, "127.0.0.1") == before + 1
