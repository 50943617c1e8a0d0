"""One map from exceptions to HTTP answers, all in one shape: {"error": {"code", "message"}}."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import Receive, Scope, Send
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from models.errors import EngramError, RateLimited
from service.http.wait import ClientGone, client_gone

log = logging.getLogger("engram.http")


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    """The one shape of every 4xx and 5xx answer."""

    error: ErrorDetail


_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return Response({"error": body}, status_code=status, media_type=MediaType.JSON, headers=headers)


def engram_error(_: Request[Any, Any, Any], exc: EngramError) -> Response[dict[str, Any]]:
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return error_response(exc.status, exc.code, str(exc), headers=headers)


def validation_error(
    _: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    details = exc.extra if isinstance(exc.extra, list) else None
    return error_response(422, "invalid_input", _validation_message(details), details=details)


def _validation_message(details: list[Any] | None) -> str:
    for detail in details or []:
        if (
            isinstance(detail, dict)
            and detail.get("key") == "data"
            and detail.get("message")
            in (
                "'data'",
                "data",
            )
        ):
            return "a JSON body is required"
        if isinstance(detail, dict) and detail.get("message"):
            key = detail.get("key")
            return f"{key}: {detail['message']}" if key else str(detail["message"])
    return "the request does not match the schema"


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status == 400:  # Litestar's 400s that are not validation errors: the body did not decode
        return error_response(400, "invalid_json", f"the body is not valid JSON: {exc.detail}")
    return error_response(status, _CODES.get(status, "error"), exc.detail, headers=exc.headers)


def undecodable(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
    return error_response(400, "invalid_json", "the body is not valid UTF-8")


def too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[dict[str, Any]]:
    return error_response(400, "invalid_json", "the body is nested too deeply")


def database_down(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("database unavailable: %s", exc)
    return error_response(
        503,
        "unavailable",
        "the database is unavailable; retry shortly",
        headers={"Retry-After": "2"},
    )


def unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an internal error occurred")


EXCEPTION_HANDLERS = {
    ClientGone: client_gone,
    EngramError: engram_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    UnicodeDecodeError: undecodable,
    RecursionError: too_deep,
    OperationalError: database_down,
    PoolTimeout: database_down,
    Exception: unexpected,
}


async def send_error(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """The answer Litestar's exception handling gives ``exc``, for code that runs outside
    it (the search route's hot path): the handler of its nearest class, as Litestar picks."""
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    handle = next(EXCEPTION_HANDLERS[c] for c in type(exc).__mro__ if c in EXCEPTION_HANDLERS)
    response = handle(request, exc)  # type: ignore[operator]
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)


# Documented on every /v1 route, so the OpenAPI document describes the errors we send.
ERRORS: dict[int, ResponseSpec] = {
    status: ResponseSpec(
        data_container=ErrorBody, description=f"error: {code}", generate_examples=False
    )
    for status, code in {**_CODES, 500: "internal_error"}.items()
    if status != 405
}
