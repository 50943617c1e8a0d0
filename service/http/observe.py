"""Every HTTP request: a request id (echoed as X-Request-ID), an access log line, and its
latency in ``engram_http_request_duration_seconds`` by route template and status.

Litestar runs app middleware only for requests that match a route; a request that matches
none (404, 405 from the router) is seen by the ``before_send`` hook instead, which echoes its
request id, logs it and counts it by status under the route ``(unmatched)``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from models.observe import metrics
from models.observe.logs import REQUEST_ID, request_context, request_id_from

log = logging.getLogger("engram.access")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()
UNMATCHED = "(unmatched)"
# Probes and scrapes come every few seconds: their lines are DEBUG unless they fail.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_TYPED_PARAMETER = re.compile(r"\{(\w+):[^}]*\}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TEMPLATES: dict[str, str] = {}  # Litestar's path template -> route_template's answer
# The histogram's series by (method, route, status): ``labels()`` costs more than observing.
_SERIES: dict[tuple[str, str, int], Any] = {}


def route_template(scope: Scope) -> str:
    """The matched route with its parameters named, never the raw path:
    ``/v1/users/{user_id}/memories``."""
    template = scope.get("path_template")
    if not template:
        return UNMATCHED
    named = _TEMPLATES.get(template)
    if named is None:  # once per route
        named = _TEMPLATES[template] = _TYPED_PARAMETER.sub(r"{\1}", template.rstrip("/") or "/")
    return named


def current_request_id() -> str | None:
    """The id of the request being handled, for handlers to store with the work they make."""
    return REQUEST_ID.get()


class ObserveRequests(ASGIMiddleware):
    """Request id, access log line and latency histogram of each request to a route."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_id = request_id_from(_header(scope, REQUEST_ID_HEADER))
        started = time.perf_counter()
        status = 500  # what the client gets if nothing was sent

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                _echo(message, request_id)
            await send(message)

        with request_context(request_id):
            try:
                await next_app(scope, receive, send_with_id)
            finally:
                _finish(scope, status, time.perf_counter() - started)


async def observe_unmatched(message: Message, scope: Scope) -> None:
    """``before_send`` hook: requests that matched no route get what the middleware gives."""
    if message["type"] != "http.response.start" or "route_handler" in scope:
        return
    request_id = request_id_from(_header(scope, REQUEST_ID_HEADER))
    _echo(message, request_id)
    status = message["status"]
    metrics.HTTP_UNMATCHED.labels(status=str(status)).inc()
    with request_context(request_id):
        _access_line(scope, UNMATCHED, status, None)


def _echo(start: HTTPResponseStartEvent, request_id: str) -> None:
    """Adds the request id to a response's headers (a ``http.response.start`` message)."""
    start["headers"] = [*start.get("headers", ()), (_REQUEST_ID_BYTES, request_id.encode())]


def _finish(scope: Scope, status: int, seconds: float) -> None:
    route, method = route_template(scope), _method(scope)
    series = _SERIES.get((method, route, status))
    if series is None:  # once per method, route and status
        series = _SERIES[(method, route, status)] = metrics.HTTP_REQUEST_DURATION.labels(
            method=method, route=route, status=str(status)
        )
    series.observe(seconds)
    _access_line(scope, route, status, seconds)


def _access_line(scope: Scope, route: str, status: int, seconds: float | None) -> None:
    level = logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {"method": _method(scope), "route": route, "status": status}
    if seconds is not None:
        fields["duration_ms"] = round(seconds * 1000, 2)
    log.log(level, "%s %s %d", fields["method"], route, status, extra=fields)


def _method(scope: Scope) -> str:
    method = str(scope.get("method", "")).upper()
    return method if method in _METHODS else "OTHER"


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None
