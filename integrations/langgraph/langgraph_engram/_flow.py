"""A batch's work as requests to the Engram client, run blocking or awaited.

The store's logic is written once, as a generator that yields what to ask the client (one
``Request``, or a list of them to run together) and gets the answers back; ``run`` drives it
with ``Engram``, ``arun`` with ``AsyncEngram`` (whose lists run concurrently). An error of
the client is thrown into the generator, which may catch it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engram_client import AsyncEngram, ClientError, Engram, NotFoundError

T = TypeVar("T")
CONCURRENT_REQUESTS = 8  # at once, from one batch of the async store


@dataclass(frozen=True)
class Request:
    """One call of a client method: ``listing`` reads every page; with ``missing`` a 404
    answers None."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    listing: bool = False
    missing: bool = False


Step = Request | list[Request]
Flow = Generator[Step, Any, T]


def run(flow: Flow[T], client: Engram) -> T:
    """The flow's result, each request sent in turn."""
    answer: Any = None
    error: ClientError | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            answer, error = _send_all(step, client), None
        except ClientError as exc:
            answer, error = None, exc


async def arun(flow: Flow[T], client: AsyncEngram) -> T:
    """The flow's result, the requests of one step sent concurrently."""
    answer: Any = None
    error: ClientError | None = None
    gate = asyncio.Semaphore(CONCURRENT_REQUESTS)
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            if isinstance(step, list):
                answer = await asyncio.gather(*(_asend(r, client, gate) for r in step))
                answer = list(answer)
            else:
                answer = await _asend(step, client, gate)
            error = None
        except ClientError as exc:
            answer, error = None, exc


def _send_all(step: Step, client: Engram) -> Any:
    if isinstance(step, list):
        return [_send(request, client) for request in step]
    return _send(step, client)


def _send(request: Request, client: Engram) -> Any:
    method = getattr(client, request.method)
    try:
        if request.listing:
            return list(method(*request.args, **request.kwargs))
        return method(*request.args, **request.kwargs)
    except NotFoundError:
        if request.missing:
            return None
        raise


async def _asend(request: Request, client: AsyncEngram, gate: asyncio.Semaphore) -> Any:
    method = getattr(client, request.method)
    async with gate:
        try:
            if request.listing:
                return [item async for item in method(*request.args, **request.kwargs)]
            return await method(*request.args, **request.kwargs)
        except NotFoundError:
            if request.missing:
                return None
            raise
