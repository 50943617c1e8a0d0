"""Pages rendered from the package's Jinja templates, with the headers every page carries."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
import msgspec
from litestar import MediaType, Response
from litestar.connection import ASGIConnection
from litestar.utils.scope.state import ScopeState

from models.errors import InvalidInput

# Where the console's guard leaves the signed-in caller, in the request's scope state.
CALLER = "engram_console_signed_in"
# A console form's route: its body is a form (service/http/app.py checks bodies by this).
FORM = {"body": "application/x-www-form-urlencoded"}
# the embedding states an item can be in, as filters offer them
STATES = ("pending", "ready", "failed")
# Pages hold a user's data and the console's forms: never cached, framed or sent elsewhere.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@functools.cache
def templates() -> jinja2.Environment:
    """The console's templates, read from the package when first used."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("service.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["block"] = block
    env.globals["query"] = query
    return env


def page(
    connection: ASGIConnection[Any, Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    **context: Any,
) -> Response[str]:
    """``template`` rendered for this request: the caller and the form token are at hand."""
    state = connection.scope["state"]
    html = (
        templates()
        .get_template(template)
        .render(
            path=connection.url.path,
            principal=state.get(CALLER),
            csrf_token=ScopeState.from_scope(connection.scope).csrf_token or "",
            **context,
        )
    )
    return Response(html, status_code=status, media_type=MediaType.HTML, headers=_HEADERS)


def when(value: datetime | None) -> str:
    """A time as people read it, in UTC."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def block(value: Any) -> str:
    """A value (metadata, details) as indented JSON, for a formatted block."""
    return json.dumps(msgspec.to_builtins(value), indent=2, ensure_ascii=False, sort_keys=True)


def query(**params: Any) -> str:
    """A query string of the parameters that have a value (``?a=1&b=2``, or empty)."""
    given = {name: value for name, value in params.items() if value not in (None, "")}
    return "?" + urlencode(given) if given else ""


def chosen(value: str | None, choices: Sequence[str], name: str) -> str | None:
    """A filter picked from ``choices``; empty (a form's "any") is no filter."""
    if not value:
        return None
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, or empty")
    return value


def moment(value: str | None, name: str) -> datetime | None:
    """A time a filter form gives: RFC 3339 with an offset; empty is no filter."""
    if not value or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{name} must be an RFC 3339 time: 2026-01-01T00:00:00Z") from None
