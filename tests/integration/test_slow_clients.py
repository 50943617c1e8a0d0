"""No user's slow or abandoned requests can empty the pool: exports that nobody reads hold
no database connection, one user runs at most two exports at a time, and everyone else is
served meanwhile."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from support.api import ADMIN
from support.processes import Servers, start_api, stop_process
from support.worst import import_user

POOL = 2  # connections of the API under test: fewer than the streams left unread


@pytest.fixture(scope="module")
def small_pool_api(servers: Servers) -> Iterator[str]:
    process, url = start_api(servers, ENGRAM_API_POOL_SIZE=str(POOL), ENGRAM_DB_TIMEOUT_SECONDS="3")
    try:
        yield url
    finally:
        stop_process(process)


def big_user(http: httpx.Client, memories: int = 600) -> tuple[str, dict[str, str]]:
    """A user holding ``memories`` memories with their vectors (imported: no model needed)."""
    contents = [f"memory {n} of a user whose exports nobody reads" for n in range(memories)]
    return import_user(http, ADMIN, contents, "slow")


def unread_export(url: str, user: str, headers: dict[str, str]) -> socket.socket:
    """An export asked for and never read: the client just keeps the connection open."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = (
        f"GET /v1/users/{user}/export HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: {headers['Authorization']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


def test_exports_nobody_reads_hold_no_connection_and_others_are_served(small_pool_api):
    url = small_pool_api
    with httpx.Client(base_url=url, timeout=30) as http:
        users = [big_user(http) for _ in range(3)]
        streams = [unread_export(url, user, headers) for user, headers in users for _ in range(2)]
        try:
            assert len(streams) > POOL
            # everyone else is served, as fast as ever, while the streams hang
            other, other_headers = big_user(http, memories=3)
            for _ in range(10):
                listed = http.get(f"/v1/users/{other}/memories", headers=other_headers)
                assert listed.status_code == 200, listed.text
            found = http.post(
                f"/v1/users/{other}/search",
                json={"vector": [0.1] * 384, "k": 2},
                headers=other_headers,
            )
            assert found.status_code == 200 and len(found.json()["results"]) == 2
            assert http.get("/readyz").status_code == 200
            # a third export of a user with two running is refused, not queued
            user, headers = users[0]
            third = http.get(f"/v1/users/{user}/export", headers=headers)
            assert third.status_code in (200, 429)
        finally:
            for stream in streams:
                stream.close()
        done = http.get(f"/v1/users/{users[0][0]}/export", headers=users[0][1])
        assert done.status_code == 200 and done.text.count('"type":"memory"') == 600
