"""``Engram``: the blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Self, TypeVar

import httpx

from engram_client._api import Api
from engram_client._calls import Blocking, Call, Done, Flow, Page, client_options, flow_of, resume
from engram_client._errors import transport_errors

T = TypeVar("T")


class Engram(Api, Blocking):
    """A client of the Engram HTTP API; ``AsyncEngram`` is the same for asyncio.

    ``base_url`` defaults to ``$ENGRAM_URL`` (else ``http://127.0.0.1:8000``), ``api_key`` to
    ``$ENGRAM_API_KEY``. ``timeout`` is in seconds per request: keep it above the server's
    wait for a write with ``wait=True`` (30 s by default). Errors raise
    ``engram_client.ApiError`` subclasses; network failures ``TransportError``.
    ``rate_limit`` says how much of the key's rate limit the latest answer left.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(**client_options(base_url, api_key, timeout), transport=transport)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        with transport_errors(call.method, call.path):
            response = self._http.request(**call.request())
        return self._read(call, response)

    def _perform(self, work: Call[T] | Flow[T]) -> T:
        flow, answer = flow_of(work), None
        while not isinstance(step := resume(flow, answer), Done):
            if isinstance(step, Call):
                answer = self._send(step)
            else:  # a pause between polls
                answer = None
                time.sleep(step)
        return step.value

    def _iterate(self, call: Call[Page[T]] | None) -> Iterator[T]:
        while call is not None:
            page = self._send(call)
            yield from page.items
            call = page.following
