"""The address failed authentications are counted by: the peer's, unless the peer is a
trusted proxy, and never what a client writes of itself. No server."""

from __future__ import annotations

import pytest

from service.http.ratelimit import FailedKeys

TRUSTED = FailedKeys("redis://unused", per_minute=1, trusted_proxies=("10.0.0.0/8", "fd00::/8"))
NOBODY = FailedKeys("redis://unused", per_minute=1)


@pytest.mark.parametrize(
    ("peer", "forwarded", "counted"),
    [
        ("203.0.113.5", [], "203.0.113.5"),
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # not a proxy: its header is a claim
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", [], "10.0.0.2"),  # a proxy that names no one is the client
        ("10.0.0.2", ["1.1.1.1, 198.51.100.1, 10.0.0.9"], "198.51.100.1"),  # the last untrusted
        ("10.0.0.2", ["1.1.1.1, 198.51.100.1", "10.0.0.9"], "198.51.100.1"),  # fields joined
        ("10.0.0.2", ["10.0.0.7, 10.0.0.9"], "10.0.0.7"),  # all proxies: the first of them
        ("10.0.0.2", ["198.51.100.1, nonsense"], "10.0.0.2"),  # garbage: the proxy that sent it
        ("10.0.0.2", ["198.51.100.1:4711"], "198.51.100.1"),  # a port, as some proxies write
        ("10.0.0.2", ["[2001:db8::1]:4711"], "2001:db8::/64"),
        ("2001:db8:1:2:aaaa::1", [], "2001:db8:1:2::/64"),  # IPv6 by its /64
        ("::ffff:203.0.113.5", [], "203.0.113.5"),  # IPv4 mapped into IPv6
        ("fd00::1", ["2001:db8:1:2::9"], "2001:db8:1:2::/64"),
        ("testclient", ["198.51.100.1"], "testclient"),  # not an IP socket
        (None, [], "unknown"),
    ],
)
def test_the_counted_address(peer, forwarded, counted):
    assert TRUSTED.address(peer, forwarded) == counted


def test_without_trusted_proxies_the_peer_is_the_client():
    assert NOBODY.address("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"
    assert NOBODY.address("10.0.0.2", ["198.51.100.1"]) == "10.0.0.2"
