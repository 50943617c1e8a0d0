"""``/mcp``: the tools over Streamable HTTP (stateless, JSON answers), mounted in the API.

The request passes the API's own guards first: a missing or bad key is the API's 401
before the MCP server reads a byte of the body, and the key is charged one request as on
any route. The SDK's session manager runs in the API's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from service.http.auth import authenticated
from service.mcp.caller import names_mcp_user
from service.mcp.tools import build_server

PATH = "/mcp"


class McpEndpoint:
    """The MCP server of one API app: its route handler and its lifespan."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self._server = build_server()
        self._max_body_bytes = max_body_bytes
        # made each time the app starts: a session manager runs once only
        self._sessions: StreamableHTTPSessionManager | None = None

        @asgi(
            PATH,
            guards=[authenticated, names_mcp_user],
            copy_scope=True,
            include_in_schema=False,
        )
        async def mcp(scope: Scope, receive: Receive, send: Send) -> None:
            assert self._sessions is not None, "requests arrive only once the app has started"
            await self._sessions.handle_request(scope, receive, send)  # type: ignore[arg-type]

        self.handler: ASGIRouteHandler = mcp

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        """A new session manager, run as long as the app. Stateless: each POST is answered
        on its own, by whichever API process gets it. The SDK's Starlette app is not served
        (only its session manager, below the API's guards); no DNS-rebinding check: a page
        cannot send a key it does not know."""
        self._server.streamable_http_app(
            json_response=True,
            stateless_http=True,
            max_request_body_size=self._max_body_bytes,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._sessions = self._server.session_manager
        async with self._sessions.run():
            yield
