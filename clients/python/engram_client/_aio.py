"""``AsyncEngram``: the asyncio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Self, TypeVar

import httpx

from engram_client._api import Api
from engram_client._calls import Awaiting, Call, Done, Flow, Page, client_options, flow_of, resume
from engram_client._errors import transport_errors

T = TypeVar("T")


class AsyncEngram(Api, Awaiting):
    """``Engram`` for asyncio: the same methods, awaited (listings: ``async for``)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = client_options(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(**options, transport=transport)

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _send(self, call: Call[T]) -> T:
        with transport_errors(call.method, call.path):
            response = await self._http.request(**call.request())
        return self._read(call, response)

    async def _perform(self, work: Call[T] | Flow[T]) -> T:
        flow, answer = flow_of(work), None
        while not isinstance(step := resume(flow, answer), Done):
            if isinstance(step, Call):
                answer = await self._send(step)
            else:  # a pause between polls
                answer = None
                await asyncio.sleep(step)
        return step.value

    async def _iterate(self, call: Call[Page[T]] | None) -> AsyncIterator[T]:
        while call is not None:
            page = await self._send(call)
            for item in page.items:
                yield item
            call = page.following
