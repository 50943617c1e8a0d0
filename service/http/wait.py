"""Writes that wait (``"wait": true``): the answer comes once the items written are embedded
or failed, or when the server-side timeout passes (``ENGRAM_WAIT_TIMEOUT_SECONDS``), or not
at all when the client has gone: then the waiting ends at once, and the answer nobody will
read is logged and counted as a 499 (the status nginx gives "client closed request")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.types import Receive

T = TypeVar("T")

CLIENT_GONE = 499


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def settled(
    request: Request[Any, Any, Any],
    timeout: float,
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
) -> tuple[T, bool]:
    """Reads the items with ``read()`` until ``done`` says none is pending or ``timeout``
    seconds pass: (the last reading, whether it is done). Raises ``ClientGone`` as soon as
    the client disconnects."""

    async def poll() -> tuple[T, bool]:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            found = await read()
            if done(found) or time.monotonic() >= deadline:
                return found, done(found)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    return await unless_gone(request, poll())


async def unless_gone(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """``work``'s result, unless the client disconnects first: then ``work`` is cancelled
    and ``ClientGone`` raised. Only once the request's body has been read: from then on the
    server's next ASGI message for the request is its disconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def client_gone(_: Request[Any, Any, Any], exc: ClientGone) -> Response[None]:
    return Response(None, status_code=CLIENT_GONE)
