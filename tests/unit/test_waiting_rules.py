"""How a waiting request reads its items again (service/http/wait.py), with the notices
stood in for: polling while no listener is connected, woken at once when it connects."""

from __future__ import annotations

import asyncio

from service.http.wait import Settlements, until_settled


def test_without_a_listener_a_wait_polls_until_its_items_settle():
    settlements = Settlements()
    readings = iter(["pending", "pending", "pending", "ready"])

    async def read() -> str:
        return next(readings)

    found = asyncio.run(until_settled(settlements, "erin", 30, read, lambda s: s != "pending"))
    assert found == ("ready", True)
    assert settlements._waiting == {}  # nothing left behind


def test_a_wait_that_times_out_says_so():
    async def read() -> str:
        return "pending"

    found = asyncio.run(until_settled(Settlements(), "erin", 0.1, read, lambda s: s != "pending"))
    assert found == ("pending", False)


def test_a_listener_connecting_wakes_every_wait():
    async def main() -> list[str]:
        settlements, reads = Settlements(), []
        settlements.listening = True  # as if connected: waits read again only when woken

        async def read() -> str:
            reads.append("read")
            return "ready" if len(reads) > 1 else "pending"

        waited = asyncio.create_task(
            until_settled(settlements, "frank", 60, read, lambda s: s != "pending")
        )
        while not reads:
            await asyncio.sleep(0)
        settlements.connected(True)  # a reconnection: notices may have been missed
        assert await asyncio.wait_for(waited, 5) == ("ready", True)
        return reads

    assert asyncio.run(main()) == ["read", "read"]
