"""What the client raises: one root, API answers by status, and transport failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec


class ClientError(Exception):
    """Base of every error the Engram client raises."""


class TransportError(ClientError):
    """The API could not be reached, or did not answer within the timeout."""


class UnexpectedAnswerError(ClientError):
    """The API answered with something the client cannot read (another version?)."""


class ApiError(ClientError):
    """The API answered with an error: ``{"error": {"code", "message", "details"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after  # seconds, when the API said (429, 503)


class InvalidRequestError(ApiError):
    """400, 413, 415, 422: the request broke a rule; ``details`` says where."""


class AuthenticationError(ApiError):
    """401: no key, or an unknown, malformed or revoked key."""


class PermissionDeniedError(ApiError):
    """403: the key may not act on this user, or the route needs an admin key."""


class NotFoundError(ApiError):
    """404: no such object for this user (or no such route)."""


class ConflictError(ApiError):
    """409: a client-chosen id already names other content."""


class RateLimitError(ApiError):
    """429: the key spent its budget; retry after ``retry_after`` seconds."""


class ServerError(ApiError):
    """5xx: the service failed; the request may be retried."""


class UnavailableError(ServerError):
    """503: the database is unreachable; retry after ``retry_after`` seconds."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
    503: UnavailableError,
}


class _Detail(msgspec.Struct):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class _ErrorBody(msgspec.Struct):
    error: _Detail


def error_from(response: httpx.Response) -> ApiError:
    """The typed error for an answer of status 400 or more."""
    status = response.status_code
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    try:
        detail = msgspec.json.decode(response.content, type=_ErrorBody).error
    except msgspec.DecodeError:  # not the API's shape: a proxy's page, say
        detail = _Detail(
            code=f"http_{status}", message=response.text[:500] or response.reason_phrase
        )
    return kind(
        status,
        detail.code,
        detail.message,
        details=detail.details,
        retry_after=_seconds(response.headers.get("Retry-After")),
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare enough to leave to the caller
        return None


@contextlib.contextmanager
def transport_errors(method: str, url: str) -> Iterator[None]:
    """Turn httpx's network failures and timeouts into ``TransportError``."""
    try:
        yield
    except httpx.TransportError as exc:
        raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
