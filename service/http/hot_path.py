"""A route's requests answered without Litestar's work per request (dependency injection, the
body decoded twice, response objects), with the same meaning as its handler.

The hot path runs every guard of the route (``authorize_connection``: the key, the user in
the path, the charge) and its ``before_request`` hook before it reads the body, then decodes
the body straight into the route's body type and calls the same ``answer`` as the handler,
with the caller and the user the guards established. Its errors go through the app's
exception handlers. A request it cannot be sure to answer alike (another content type, a
length unknown or over the limit, a body that does not decode) goes on to the handler, with
what it read of the body given back; the guards, which already ran for that request, pass it
through. A test checks that the route has no dependency, hook or middleware that this path
would skip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from models.types import Principal
from service.http.auth import provide_owner, provide_principal, runtime_of
from service.http.errors import send_error
from service.http.runtime import Runtime

B = TypeVar("B")
# The parameters a hot route's handler may take: what this path provides it, too.
PROVIDES = frozenset({"runtime", "principal", "owner", "data"})
Answer = Callable[[Runtime, Principal, str, Any], Awaitable[msgspec.Struct]]


class HotPath(ASGIMiddleware, Generic[B]):
    """Answers a route with ``answer(runtime, principal, owner, data)``, ``data`` decoded as
    ``body``: the function its handler calls."""

    def __init__(self, answer: Answer, body: type[B]) -> None:
        self.answer = answer
        self.body = body

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        runtime = runtime_of(request)
        fields = _first_fields(scope)
        if not _takes(fields, runtime.settings.limits.max_body_bytes):
            await next_app(scope, receive, send)
            return
        handler = cast(HTTPRouteHandler, scope["route_handler"])
        try:  # what Litestar runs before it reads the body: the guards, then the hook
            for guard in handler.resolve_guards():
                # as ``authorize_connection`` calls them, less its copy of the handler for
                # each guard (none of ours changes the handler it is given)
                await guard(request, handler)  # type: ignore[misc]  # async, as Litestar awaits them
            if before := handler.resolve_before_request():
                await before(request)
        except Exception as exc:  # Litestar's handling lies around the handler only
            await send_error(scope, receive, send, exc)
            return
        read: list[ReceiveMessage] = []
        data = await self._decoded(receive, read)
        if data is None:  # the handler's to answer

            async def replay() -> ReceiveMessage:
                return read.pop(0) if read else await receive()

            await next_app(scope, replay, send)
            return
        try:
            principal, owner = provide_principal(request), provide_owner(request)
            answer = await self.answer(runtime, principal, owner, data)
        except Exception as exc:
            await send_error(scope, receive, send, exc)
            return
        await _respond(send, msgspec.json.encode(answer))

    async def _decoded(self, receive: Receive, read: list[ReceiveMessage]) -> B | None:
        """The body, decoded; None when the client is gone or it does not decode. Each
        message received is kept in ``read``."""
        body = b""
        while not read or read[-1].get("more_body", False):
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
        try:
            decoded: B = _decoder(self.body).decode(body)
        except (msgspec.DecodeError, RecursionError):
            return None
        return decoded


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(body: type[B]) -> msgspec.json.Decoder[B]:
    """One decoder per body type, made on first use (a middleware holds none: Litestar
    copies its route handlers' settings)."""
    if body not in _DECODERS:
        _DECODERS[body] = msgspec.json.Decoder(body)
    return _DECODERS[body]


def _first_fields(scope: Scope) -> dict[bytes, bytes]:
    """Each header's first value, as Litestar's ``request.headers.get`` reads it."""
    fields: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        fields.setdefault(name.lower(), value)
    return fields


def _takes(fields: dict[bytes, bytes], max_bytes: int) -> bool:
    """Whether the headers promise a body this path reads as the handler would: JSON (no
    parameters), of a known length within the limit."""
    length = fields.get(b"content-length", b"")
    return (
        fields.get(b"content-type") == b"application/json"
        and b"transfer-encoding" not in fields
        and length.isdigit()
        and int(length) <= max_bytes
    )


async def _respond(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send(HTTPResponseStartEvent(type="http.response.start", status=200, headers=headers))
    await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
