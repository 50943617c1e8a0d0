"""Writes that wait (``"wait": true``): the answer comes once the items written are embedded
or failed, or when the server-side timeout passes (``ENGRAM_WAIT_TIMEOUT_SECONDS``), or not
at all when the client has gone: then the waiting ends at once, and the answer nobody will
read is logged and counted as a 499 (the status nginx gives "client closed request").

A waiting request reads its items again when Postgres says some of its user's items have
settled: migration 0024 sends a notice on ``engram_settled`` (the user's id, hashed) as an
item leaves ``pending``, and the process's listener (service/http/notices.py) wakes the
requests waiting on that user. Without a notice they read again every
``RECHECK_SECONDS``, and while the listener is down they poll, backing off to
``POLL_MAX_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.types import Receive

T = TypeVar("T")

CLIENT_GONE = 499
CHANNEL = "engram_settled"  # migrations/versions/0024_settled_notices.py
RECHECK_SECONDS = 1.0  # between readings while the listener is up: an item deleted meanwhile
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def user_key(user_id: str) -> str:
    """What an ``engram_settled`` notice carries for a user: the md5 of their id, in hex."""
    return hashlib.md5(user_id.encode(), usedforsecurity=False).hexdigest()


class Settlements:
    """The requests of this process waiting for their items, woken by user."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self.listening = False

    def connected(self, up: bool) -> None:
        """The listener connected or lost its connection: every waiting request reads again
        (notices may have been missed) and waits the new way."""
        self.listening = up
        for events in self._waiting.values():
            for event in events:
                event.set()

    def notice(self, payload: str) -> None:
        for event in self._waiting.get(payload, ()):
            event.set()

    @contextlib.contextmanager
    def watching(self, user_id: str) -> Iterator[asyncio.Event]:
        """An event set when some of ``user_id``'s items settle, while in the block."""
        key, event = user_key(user_id), asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiting[key]
            events.discard(event)
            if not events:
                del self._waiting[key]


async def settled(
    request: Request[Any, Any, Any],
    settlements: Settlements,
    user_id: str,
    timeout: float,
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
) -> tuple[T, bool]:
    """``until_settled``, or ``ClientGone`` as soon as the client disconnects."""
    return await unless_gone(request, until_settled(settlements, user_id, timeout, read, done))


async def until_settled(
    settlements: Settlements,
    user_id: str,
    timeout: float,
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
) -> tuple[T, bool]:
    """Reads ``user_id``'s items with ``read()`` until ``done`` says none is pending or
    ``timeout`` seconds pass: (the last reading, whether it is done)."""
    deadline = time.monotonic() + timeout
    poll = POLL_FIRST_SECONDS
    with settlements.watching(user_id) as woken:
        while True:
            woken.clear()  # before reading: a notice from now on means read again
            found = await read()
            finished, left = done(found), deadline - time.monotonic()
            if finished or left <= 0:
                return found, finished
            if settlements.listening:
                pause = RECHECK_SECONDS
            else:
                pause, poll = poll, min(poll * 1.5, POLL_MAX_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(pause, left))


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
