"""Authentication and scope checks, as Litestar dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from litestar import Request
from litestar.datastructures import State

from models.errors import Forbidden, Unauthenticated
from models.store import keys
from models.types import Principal
from models.validation import check_user_id
from service.http.runtime import Runtime

T = TypeVar("T")

_BOOTSTRAP = Principal(key_id=keys.BOOTSTRAP_KEY_ID, user_id=None)
# A route's opt: it charges the rate limit itself (``charged``), not before it runs.
CHARGES_ITSELF = "charges_itself"


def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def provide_principal(request: Request[Any, Any, Any], runtime: Runtime) -> Principal:
    """The caller, from ``Authorization: Bearer <key>``; the same 401 for any bad key."""
    charge = not request.route_handler.opt.get(CHARGES_ITSELF)
    return await authenticate(runtime, request.headers.get("authorization", ""), charge=charge)


async def authenticate(runtime: Runtime, authorization: str, *, charge: bool) -> Principal:
    """The key in an ``Authorization`` header's value, charged one request unless the route
    ``charges`` itself; the same 401 for any bad key."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing or invalid API key")
    if keys.matches_bootstrap(token, runtime.settings.server.admin_key):
        principal: Principal | None = _BOOTSTRAP
    else:
        principal = await runtime.keys.verify(
            token, lambda token: runtime.across_users(keys.authenticate, token)
        )
    if principal is None:
        raise Unauthenticated("missing or invalid API key")
    if charge:
        await runtime.limiter.charge(principal.key_id)
    return principal


def provide_owner(user_id: str, principal: Principal) -> str:
    """The user in the path, once the key may act on them (admin keys may act on anyone)."""
    check_user_id(user_id)
    if not principal.is_admin and principal.user_id != user_id:
        raise Forbidden("this key may not act on this user")
    return user_id


def provide_admin(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this route needs an admin key")
    return principal


async def charged(runtime: Runtime, principal: Principal, cost: int, work: Awaitable[T]) -> T:
    """``work``'s result, with ``cost`` charged to the key meanwhile: a route that only reads
    (a search) need not wait for Redis before it starts. Past the limit the answer is
    dropped for a 429; the request is counted whether or not ``work`` succeeds. What this
    process holds leased is spent at once, without a task."""
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
