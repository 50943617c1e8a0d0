"""The console's router, mounted by the API at ``/console``: its pages, its static files,
its form tokens (CSRF) and its errors as pages."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from models.errors import EngramError, RateLimited, Unauthenticated
from models.settings import Settings
from service.console.pages.documents import DocumentPages
from service.console.pages.memories import MemoryPages
from service.console.pages.operations import OperationPages
from service.console.pages.search import SearchPages
from service.console.pages.sessions import SessionPages
from service.console.pages.users import UserPages
from service.console.render import page, query
from service.console.session import (
    COOKIE,
    PATH,
    SessionController,
    SignedOut,
    back_to,
    forget,
)

STATIC = Path(__file__).parent / "static"
CSRF_COOKIE = "engram_console_csrf"


def console_router(settings: Settings) -> Router:
    """Every page of the console, under ``/console``; none is in the OpenAPI document."""
    return Router(
        path="/",
        route_handlers=[
            SessionController,
            UserPages,
            MemoryPages,
            DocumentPages,
            SessionPages,
            SearchPages,
            OperationPages,
            create_static_files_router(
                path=f"{PATH}/static",
                directories=[STATIC],
                name="console-static",
                cache_control=CacheControlHeader(max_age=3600),
                include_in_schema=False,
            ),
        ],
        middleware=[DefineMiddleware(CSRFMiddleware, config=_csrf(settings))],
        exception_handlers={
            EngramError: _engram_error,
            ValidationException: _invalid_request,
            HTTPException: _http_error,
        },
        include_in_schema=False,
    )


def _csrf(settings: Settings) -> CSRFConfig:
    """Form tokens signed by a secret every API process of this deployment derives alike
    from the admin key (a random one for this process alone without it)."""
    admin_key = settings.server.admin_key
    secret = (
        hmac.new(admin_key.encode(), b"engram console forms", hashlib.sha256).hexdigest()
        if admin_key
        else secrets.token_hex(32)
    )
    return CSRFConfig(
        secret=secret,
        cookie_name=CSRF_COOKIE,
        cookie_path=PATH,
        cookie_httponly=True,
        cookie_samesite="strict",
        exclude=[f"^{PATH}/static/"],
    )


def _engram_error(request: Request[Any, Any, Any], exc: EngramError) -> Response[Any]:
    if isinstance(exc, Unauthenticated):
        # no session, or its key is no longer valid (revoked): sign in again
        reason = None if isinstance(exc, SignedOut) else "invalid"
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        after = back if request.method == "GET" else None  # a form is not sent again
        where = query(signed_out=reason, next=back_to(after))
        return forget(Redirect(f"{PATH}/sign-in{where}", status_code=303))
    response = _error_page(request, exc.status, str(exc))
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _invalid_request(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    named = [
        f"{problem.get('key', 'value')}: {problem.get('message', 'invalid')}"
        for problem in problems
        if isinstance(problem, dict)
    ]
    return _error_page(request, 422, "; ".join(named) or str(exc.detail))


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    message = str(exc.detail)
    if exc.status_code == 403 and "CSRF" in message:
        message = "This form has expired or did not come from the console: load the page again."
    return _error_page(request, exc.status_code, message)


def _error_page(request: Request[Any, Any, Any], status: int, message: str) -> Response[Any]:
    signed_in = bool(request.cookies.get(COOKIE))
    return page(request, "error.html", status=status, message=message, signed_in=signed_in)
