"""The one error tree of Engram; the HTTP edge maps it to responses in one place."""

from __future__ import annotations


class EngramError(Exception):
    """Base of every error Engram raises on purpose."""

    code = "internal_error"
    status = 500


class ConfigError(EngramError):
    """The configuration is invalid or incomplete."""

    code = "config_error"


class BackupFailed(EngramError):
    """A backup or a restore could not be made (``engram backup`` / ``engram restore``)."""

    code = "backup_failed"


class InvalidInput(EngramError):
    """The request is well-formed but its content breaks a rule."""

    code = "invalid_input"
    status = 422


class Unauthenticated(EngramError):
    """No key, or a key that is unknown, malformed or revoked."""

    code = "unauthenticated"
    status = 401


class Forbidden(EngramError):
    """A valid key that may not act on this user or route."""

    code = "forbidden"
    status = 403


class NotFound(EngramError):
    """No such object for this user."""

    code = "not_found"
    status = 404


class Conflict(EngramError):
    """A client-chosen id already names different content."""

    code = "conflict"
    status = 409


class RateLimited(EngramError):
    """The key spent its rate limit; retry after ``retry_after`` seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EmbeddingError(EngramError):
    """Embedding failed; ``permanent`` says whether retrying can help."""

    code = "embedding_failed"

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class WrongDimensions(EmbeddingError):
    """A provider answered vectors of another length than its space's: misconfiguration."""

    def __init__(self, message: str, *, actual: int) -> None:
        super().__init__(message, permanent=True)
        self.actual = actual
