"""Who is calling, and what they may touch: route guards, and the dependencies they feed.

Guards run before Litestar reads a request's body, so a caller without a valid key, or with
a key that may not act on the user in the path, is answered without the body being read or
decoded. Each guard leaves what it established in the request's scope state, where the
dependencies ``principal`` and ``owner`` read it; a guard that already ran for a request
(the search route's hot path runs them first) does nothing the second time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, TypeVar

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope

from models.errors import Forbidden, RateLimited, Unauthenticated
from models.store import keys
from models.types import Principal
from models.validation import check_user_id
from service.http.runtime import Runtime

T = TypeVar("T")

_BOOTSTRAP = Principal(key_id=keys.BOOTSTRAP_KEY_ID, user_id=None)
# A route's opt: it charges the rate limit itself (``charged``), not before it runs.
CHARGES_ITSELF = "charges_itself"
# Whether such a route did charge the request (a request is handled in one task).
_CHARGED_ITSELF: ContextVar[bool] = ContextVar("engram_charged_itself", default=False)
# Where the guards leave the caller and the user it acts on, in the request's scope state.
_PRINCIPAL = "engram_principal"
_OWNER = "engram_owner"

Connection = ASGIConnection[Any, Any, Any, Any]


async def authenticated(connection: Connection, handler: BaseRouteHandler) -> None:
    """Guard: a valid key (else 401), charged one request unless the route charges itself."""
    state = _state(connection)
    if _PRINCIPAL in state:
        return
    runtime = runtime_of(connection)
    principal = await authenticate(runtime, connection)
    state[_PRINCIPAL] = principal
    if not handler.opt.get(CHARGES_ITSELF):
        await runtime.limiter.charge(principal.key_id)


async def acts_on_path_user(connection: Connection, handler: BaseRouteHandler) -> None:
    """Guard, after ``authenticated``: the key may act on the user in the path (admin keys
    may act on anyone), else 403."""
    state = _state(connection)
    if _OWNER in state:
        return
    user_id = check_user_id(connection.path_params["user_id"])
    principal: Principal = state[_PRINCIPAL]
    if not principal.is_admin and principal.user_id != user_id:
        raise Forbidden("this key may not act on this user")
    state[_OWNER] = user_id


async def admin_only(connection: Connection, handler: BaseRouteHandler) -> None:
    """Guard, after ``authenticated``: an admin key, else 403."""
    if not _state(connection)[_PRINCIPAL].is_admin:
        raise Forbidden("this route needs an admin key")


async def reads_metrics(connection: Connection, handler: BaseRouteHandler) -> None:
    """Guard of ``/metrics``: the metrics token or an admin key (else 401 or 403), unless
    the metrics are made public. They count every user's items and requests."""
    runtime = runtime_of(connection)
    server = runtime.settings.server
    if server.metrics_public:
        return
    authorization = connection.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if (
        server.metrics_token
        and scheme.lower() == "bearer"
        and keys.same_secret(token.strip(), server.metrics_token)
    ):
        return
    await authenticated(connection, handler)
    await admin_only(connection, handler)


# Every route of one user's data, and every admin route, is guarded by one of these.
USER_GUARDS = [authenticated, acts_on_path_user]
ADMIN_GUARDS = [authenticated, admin_only]


async def authenticate(runtime: Runtime, connection: Connection) -> Principal:
    """The key in the request's ``Authorization`` header; the same 401 for any bad key, or a
    429 once the client's address is past its limit of them (``FailedKeys``)."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return await authenticate_token(
        runtime, connection, token.strip() if scheme.lower() == "bearer" else ""
    )


async def authenticate_token(runtime: Runtime, connection: Connection, token: str) -> Principal:
    """The key ``token`` (from a header, or the console's session cookie), checked as
    ``authenticate`` checks it: the same 401 for any bad key, counted against the address."""
    principal = None
    if token:
        if keys.matches_bootstrap(token, runtime.settings.server.admin_key):
            return _BOOTSTRAP
        principal = await runtime.keys.verify(
            token, lambda token: _look_up(runtime, connection, token)
        )
    if principal is None:
        await runtime.failed_keys.count(client_address(runtime, connection))
        raise Unauthenticated("missing or invalid API key")
    return principal


async def _look_up(runtime: Runtime, connection: Connection, token: str) -> Principal | None:
    """A key this process does not remember, from Postgres; not for an address that spent
    its limit of failures (its unknown keys would each cost a lookup)."""
    runtime.failed_keys.refuse_if_over(client_address(runtime, connection))
    return await runtime.across_users(keys.authenticate, token)


def client_address(runtime: Runtime, connection: Connection) -> str:
    """The client's address, as failed authentications are counted by."""
    peer = connection.scope.get("client")
    forwarded = (
        connection.headers.getall("x-forwarded-for", []) if runtime.failed_keys.trusted else []
    )
    return runtime.failed_keys.address(peer[0] if peer else None, forwarded)


async def rate_limit_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: an answer to a charged key says what is left of its limit
    (``RateLimit-Limit``, ``-Remaining``, ``-Reset``), as this process knows it."""
    if message["type"] != "http.response.start":
        return
    principal: Principal | None = scope.get("state", {}).get(_PRINCIPAL)
    if principal is None:
        return
    limiter = scope["app"].state.runtime.limiter
    if scope["route_handler"].opt.get(CHARGES_ITSELF) and not _CHARGED_ITSELF.get():
        # refused before it could charge (a 403, a body that does not decode): counted too
        with contextlib.suppress(RateLimited):  # too late to refuse; the figure says it
            await limiter.charge(principal.key_id)
    quota = limiter.quota(principal.key_id)
    if quota is None:
        return
    left, reset = quota
    message["headers"] = [
        *message.get("headers", ()),
        (b"ratelimit-limit", b"%d" % limiter.per_minute),
        (b"ratelimit-remaining", b"%d" % left),
        (b"ratelimit-reset", b"%d" % reset),
    ]


def admit(connection: Connection, principal: Principal) -> None:
    """Leave ``principal`` as the request's caller, as ``authenticated`` does (the console
    signs its callers in from a cookie): ``acts_on_path_user`` and ``principal`` read it."""
    _state(connection)[_PRINCIPAL] = principal


def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def provide_principal(request: Connection) -> Principal:
    """The caller, as the ``authenticated`` guard found it."""
    principal: Principal = _state(request)[_PRINCIPAL]
    return principal


def provide_owner(request: Connection) -> str:
    """The user in the path, as the ``acts_on_path_user`` guard allowed it."""
    owner: str = _state(request)[_OWNER]
    return owner


def runtime_of(connection: Connection) -> Runtime:
    """The open resources of this API process."""
    runtime: Runtime = connection.app.state.runtime
    return runtime


def _state(connection: Connection) -> dict[str, Any]:
    state: dict[str, Any] = connection.scope["state"]
    return state


async def charged(runtime: Runtime, principal: Principal, cost: int, work: Awaitable[T]) -> T:
    """``work``'s result, with ``cost`` charged to the key meanwhile: a route that only reads
    (a search) need not wait for Redis before it starts. Past the limit the answer is
    dropped for a 429; the request is counted whether or not ``work`` succeeds. What this
    process holds leased is spent at once, without a task."""
    _CHARGED_ITSELF.set(True)
    rest = runtime.limiter.spend_lease(principal.key_id, cost)
    if not rest:
        return await work
    charge = asyncio.ensure_future(runtime.limiter.charge_redis(principal.key_id, rest))
    try:
        result = await work
    except BaseException:
        await asyncio.gather(charge, return_exceptions=True)
        raise
    await charge
    return result
