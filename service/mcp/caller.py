"""Who a tool call acts for: the key the ``/mcp`` request was authenticated with, and the
user it names. A user key acts on its own user only; an admin key names the user in the
``X-Engram-User`` header. No tool takes a user id as an argument."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from models.errors import EngramError, Forbidden, RateLimited
from models.types import Principal
from models.validation import check_user_id
from service.http.auth import Connection, provide_principal
from service.http.observe import current_request_id
from service.http.runtime import Runtime

USER_HEADER = "x-engram-user"
# where the guard leaves the key and the user a request's tool calls act on (scope state)
_MCP_CALLER = "engram_mcp_caller"


class Caller(NamedTuple):
    """The open resources, the key and the user of one tool call, and the HTTP request's id
    (tools run in the SDK's tasks, outside the request's context)."""

    runtime: Runtime
    principal: Principal
    owner: str
    request_id: str | None


async def names_mcp_user(connection: Connection, handler: Any) -> None:
    """Guard, after ``authenticated``: the user the request's tool calls act on. A user key's
    own (a header naming another user is a 403); the header's user for an admin key."""
    principal = provide_principal(connection)
    named = connection.headers.get(USER_HEADER)
    user_id = check_user_id(named) if named is not None else None
    if not principal.is_admin:
        if user_id is not None and user_id != principal.user_id:
            raise Forbidden("this key may not act on this user")
        user_id = principal.user_id
    connection.scope["state"][_MCP_CALLER] = (principal, user_id, current_request_id())


def caller(ctx: Context[Any, Any]) -> Caller:
    """The caller of the tool call in ``ctx``, as the ``/mcp`` route's guards found it."""
    scope = getattr(ctx.request_context.request, "scope", None)
    if scope is None or _MCP_CALLER not in scope.get("state", {}):
        raise ToolError("Engram's tools are served at the API's /mcp only")
    principal, owner, request_id = scope["state"][_MCP_CALLER]
    if owner is None:
        raise ToolError(
            "an admin key names the user its tool calls act on, in the X-Engram-User header"
        )
    return Caller(scope["app"].state.runtime, principal, owner, request_id)


@contextmanager
def tool_errors() -> Iterator[None]:
    """Engram's errors as tool errors: the model reads the message an HTTP client would."""
    try:
        yield
    except RateLimited as exc:
        raise ToolError(f"{exc}; retry after {exc.retry_after} s") from exc
    except EngramError as exc:
        raise ToolError(str(exc)) from exc
