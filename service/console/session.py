"""Signing in to the console with an Engram key, and the guards of its pages.

The key lives in a session cookie (``HttpOnly``, ``SameSite=Strict``, no expiry: it goes
when the browser ends the session or the user signs out). Every request checks it as the
API checks an ``Authorization`` header (``service/http/auth.py``): a revoked key is signed
out at once, and a bad key counts against the client address's limit of failed keys.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect

from models.errors import EngramError, Unauthenticated
from models.types import Principal
from service.console.render import CALLER, FORM, page
from service.http.auth import (
    Connection,
    acts_on_path_user,
    admin_only,
    admit,
    authenticate_token,
    runtime_of,
)

COOKIE = "engram_console"
PATH = "/console"


class SignedOut(Unauthenticated):
    """No console session: the browser is sent to the sign-in page."""


async def signed_in(connection: Connection, handler: BaseRouteHandler) -> None:
    """Guard: the session's key is valid (else the sign-in page), charged one request."""
    state: dict[str, Any] = connection.scope["state"]
    if CALLER in state:
        return
    token = connection.cookies.get(COOKIE)
    if not token:
        raise SignedOut("sign in with an Engram key")
    runtime = runtime_of(connection)
    principal = await authenticate_token(runtime, connection, token)
    admit(connection, principal)
    state[CALLER] = principal
    await runtime.limiter.charge(principal.key_id)


def caller(connection: Connection) -> Principal:
    """Who is signed in, as ``signed_in`` found them."""
    principal: Principal = connection.scope["state"][CALLER]
    return principal


def session_cookie(request: Connection, token: str) -> Cookie:
    """The cookie that holds ``token`` for the browser's session, for the console only."""
    return Cookie(
        key=COOKIE,
        value=token,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget(response: Response[Any]) -> Response[Any]:
    """``response``, telling the browser to drop the session cookie."""
    response.delete_cookie(COOKIE, path=PATH)
    return response


def back_to(path: str | None) -> str | None:
    """A console page to return to after signing in: a path of the console, nothing else
    (never another site: ``//host`` or a scheme)."""
    if not path or not path.startswith(f"{PATH}/") or path.startswith("//") or "\\" in path:
        return None
    if path.startswith((f"{PATH}/sign-in", f"{PATH}/sign-out", f"{PATH}/static/")):
        return None
    return path


def home(principal: Principal) -> str:
    """Where a caller starts: the users (an admin), or the key's own user."""
    return f"{PATH}/users" if principal.is_admin else f"{PATH}/users/{principal.user_id}"


class SessionController(Controller):
    """The sign-in page, signing in and out."""

    path = PATH

    @get("/sign-in")
    async def sign_in_page(self, request: Request[Any, Any, Any]) -> Response[str]:
        return page(
            request,
            "sign_in.html",
            signed_out=request.query_params.get("signed_out"),
            next_page=back_to(request.query_params.get("next")),
        )

    @post("/sign-in", opt=FORM)
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Sign in with the key in the form; a bad key answers the form again with a 401."""
        form = await request.form()
        token = str(form.get("key", "")).strip()
        next_page = back_to(str(form.get("next", "")))
        try:
            principal = await authenticate_token(runtime_of(request), request, token)
        except EngramError as exc:
            return page(
                request, "sign_in.html", status=exc.status, error=_refusal(exc), signed_out=None,
                next_page=next_page,
            )  # fmt: skip
        redirect = Redirect(next_page or home(principal), status_code=303)
        redirect.set_cookie(session_cookie(request, token))
        return redirect

    @post("/sign-out", opt=FORM)
    async def sign_out(self) -> Response[Any]:
        """Forget the key: the cookie is deleted."""
        return forget(Redirect(f"{PATH}/sign-in?signed_out=1", status_code=303))

    @get("/")
    async def index(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if not request.cookies.get(COOKIE):
            return Redirect(f"{PATH}/sign-in", status_code=303)
        await signed_in(request, request.route_handler)
        return Redirect(home(caller(request)), status_code=303)


def _refusal(exc: EngramError) -> str:
    if isinstance(exc, Unauthenticated):
        return "That key is not valid: it may be mistyped or revoked."
    return str(exc)


# Every page of one user's data is guarded by these, the routes' own check of the user in
# the path after the session's; every other page by the first, and admin pages' by the API's
# admin check after it.
USER_PAGE_GUARDS = [signed_in, acts_on_path_user]
SIGNED_IN_GUARDS = [signed_in]
admin_page = admin_only
