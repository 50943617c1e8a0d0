"""``engram mcp``: the tools over stdio, for desktop clients that start their
servers as processes. It serves no tool of its own: it forwards each listing and call to a
running API's ``/mcp`` with a key, so the tools, their checks and who they act for are the
HTTP server's, byte for byte. ``ENGRAM_URL`` (default ``http://127.0.0.1:8000``) and
``ENGRAM_API_KEY`` as for the Python client; ``ENGRAM_USER`` names the user for an admin key."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp.client import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp_types import CallToolRequestParams, CallToolResult, ListToolsResult

from service.mcp.caller import USER_HEADER

DEFAULT_URL = "http://127.0.0.1:8000"


class Misconfigured(Exception):
    """The environment does not say how to reach the API."""


def remote_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """The headers every forwarded request carries: the key, and the user an admin key names."""
    key = environ.get("ENGRAM_API_KEY", "").strip()
    if not key:
        raise Misconfigured("set ENGRAM_API_KEY to a key of the running API")
    headers = {"Authorization": f"Bearer {key}"}
    if user := environ.get("ENGRAM_USER", "").strip():
        headers[USER_HEADER] = user
    return headers


@asynccontextmanager
async def remote(environ: Mapping[str, str]) -> AsyncIterator[ClientSession]:
    """A client session of the API's ``/mcp``, initialized."""
    url = environ.get("ENGRAM_URL", DEFAULT_URL).rstrip("/") + "/mcp"
    async with (
        httpx2.AsyncClient(headers=remote_headers(environ), timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        yield session


def bridge(session: ClientSession, instructions: str | None) -> Server[Any]:
    """A server whose tools are ``session``'s."""

    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return await session.list_tools()

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        return await session.call_tool(params.name, params.arguments)

    return Server(
        "engram", instructions=instructions, on_list_tools=list_tools, on_call_tool=call_tool
    )


async def serve(environ: Mapping[str, str]) -> None:
    async with remote(environ) as session:
        started = await session.initialize()
        server = bridge(session, started.instructions)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


def main(environ: Mapping[str, str] | None = None) -> int:
    """Serve until the client closes stdin; 2 when the API cannot be reached or refuses."""
    try:
        anyio.run(serve, os.environ if environ is None else environ)
    except Misconfigured as exc:
        print(f"engram mcp: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the API is down, or refused the key: say so, not a traceback
        print(f"engram mcp: cannot use the API's /mcp: {exc!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
