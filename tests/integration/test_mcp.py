"""The MCP server at ``/mcp`` against a real `engram api` process and a real worker, through
the SDK's own client (``ClientSession`` over its Streamable HTTP transport, and over stdio
through ``engram mcp``): the tools listed and each one called, bad
arguments as tool errors, keys binding calls to their user, an admin key naming one, a bad
key refused before any tool runs."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from support.api import ADMIN
from support.processes import ADMIN_KEY, start_api, stop_process

pytestmark = pytest.mark.usefixtures("worker")

T = TypeVar("T")
TOOLS = {
    "remember",
    "recall",
    "get_context",
    "list_memories",
    "get_memory",
    "update_memory",
    "forget",
    "forget_all",
}


FORGET_ALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "forget_all", "arguments": {"confirm": "forget everything"}},
}


def post_mcp(api_url: str, message: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    """One JSON-RPC message posted to ``/mcp`` by hand, as a client we did not write would."""
    return httpx.post(
        f"{api_url}/mcp",
        json=message,
        headers={"Accept": "application/json, text/event-stream", **headers},
    )


@pytest.fixture
def new_key(api_url: str) -> Callable[[], tuple[str, str]]:
    """A fresh user and a key scoped to it, made through the real API: (user_id, key)."""

    def make() -> tuple[str, str]:
        user_id = f"mcp-{uuid.uuid4().hex[:12]}"
        answer = httpx.post(f"{api_url}/v1/keys", json={"user_id": user_id}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        return user_id, answer.json()["key"]

    return make


@asynccontextmanager
async def connected(api_url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(f"{api_url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def as_user(
    api_url: str, key: str, work: Callable[[ClientSession], Awaitable[T]], **headers: str
) -> T:
    async def run() -> T:
        async with connected(api_url, {"Authorization": f"Bearer {key}", **headers}) as s:
            return await work(s)

    return asyncio.run(run())


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


def test_the_tools_are_listed_with_descriptions(api_url, new_key):
    _, key = new_key()

    async def work(s: ClientSession) -> Any:
        return (await s.list_tools()).tools

    tools = {tool.name: tool for tool in as_user(api_url, key, work)}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40, tool.name
        assert "user_id" not in tool.input_schema.get("properties", {}), tool.name
    assert tools["forget_all"].annotations.destructive_hint
    assert tools["recall"].annotations.read_only_hint


def test_every_tool_on_a_users_memory(api_url, new_key):
    _, key = new_key()

    async def work(s: ClientSession) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        seen["remember"] = ok(
            await s.call_tool(
                "remember",
                {
                    "content": "Dana is allergic to hazelnuts",
                    "metadata": {"topic": "health"},
                    "importance": 0.9,
                    "occurred_at": "2026-01-02T03:04:05+00:00",
                    "session_id": "chat-1",
                    "wait": True,
                },
            )
        )
        other = ok(await s.call_tool("remember", {"content": "Dana plays the cello", "wait": True}))
        memory_id = seen["remember"]["id"]
        seen["recall"] = ok(
            await s.call_tool("recall", {"query": "what can Dana not eat?", "k": 5})
        )
        seen["filtered"] = ok(
            await s.call_tool(
                "recall", {"query": "Dana", "filter": {"topic": "health"}, "mode": "vector"}
            )
        )
        seen["context"] = ok(
            await s.call_tool("get_context", {"query": "food for Dana", "max_tokens": 200})
        )
        seen["page"] = ok(await s.call_tool("list_memories", {"limit": 1}))
        seen["next"] = ok(
            await s.call_tool("list_memories", {"limit": 1, "cursor": seen["page"]["next_cursor"]})
        )
        seen["get"] = ok(await s.call_tool("get_memory", {"id": memory_id}))
        seen["update"] = ok(
            await s.call_tool("update_memory", {"id": memory_id, "importance": 0.5})
        )
        seen["forget"] = ok(await s.call_tool("forget", {"ids": [other["id"], str(uuid.uuid4())]}))
        seen["refused"] = error(await s.call_tool("forget_all", {"confirm": "yes"}))
        seen["left"] = ok(await s.call_tool("list_memories", {}))
        seen["forget_all"] = ok(await s.call_tool("forget_all", {"confirm": "forget everything"}))
        seen["empty"] = ok(await s.call_tool("list_memories", {}))
        seen["other_id"] = other["id"]
        return seen

    seen = as_user(api_url, key, work)
    remembered = seen["remember"]
    assert remembered["status"] == "ready"
    assert remembered["duplicate"] is False
    assert remembered["metadata"] == {"topic": "health"}
    assert remembered["session_id"] == "chat-1"
    assert remembered["occurred_at"].startswith("2026-01-02T03:04:05")
    assert seen["recall"]["results"][0]["id"] == remembered["id"]
    assert [hit["id"] for hit in seen["filtered"]["results"]] == [remembered["id"]]
    assert "hazelnuts" in seen["context"]["text"]
    assert len(seen["page"]["memories"]) == 1
    assert seen["page"]["next_cursor"]
    assert seen["next"]["memories"][0]["id"] != seen["page"]["memories"][0]["id"]
    assert seen["get"]["content"] == "Dana is allergic to hazelnuts"
    assert seen["update"]["importance"] == 0.5
    assert seen["forget"]["deleted"] == [seen["other_id"]]
    assert len(seen["forget"]["not_found"]) == 1
    assert "forget everything" in seen["refused"]
    assert [m["id"] for m in seen["left"]["memories"]] == [remembered["id"]]
    assert seen["forget_all"]["memories"] == 1
    assert seen["empty"]["memories"] == []


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("remember", {"content": ""}, "content"),
        ("remember", {"content": "x", "importance": 2}, "importance"),
        ("remember", {"content": "x", "occurred_at": "yesterday"}, "occurred_at"),
        ("remember", {"content": "a\x00b"}, "NUL"),
        ("recall", {"query": "x", "k": 0}, "k"),
        ("recall", {"query": "x", "mode": "psychic"}, "mode"),
        ("recall", {"query": "x", "filter": {"$bogus": 1}}, "filter"),
        ("get_context", {"query": "x", "max_tokens": 1}, "max_tokens"),
        ("list_memories", {"limit": 1000}, "limit"),
        ("list_memories", {"cursor": "not-a-cursor"}, "cursor"),
        ("get_memory", {"id": "not-an-id"}, "not a memory id"),
        ("get_memory", {"id": str(uuid.uuid4())}, "not found"),
        ("update_memory", {"id": str(uuid.uuid4()), "content": "x"}, "not found"),
        ("forget", {"ids": []}, "ids"),
        ("forget_all", {}, "confirm"),
        ("no_such_tool", {}, "no_such_tool"),
    ],
)
def test_bad_arguments_are_tool_errors(api_url, new_key, tool, arguments, says):
    _, key = new_key()

    async def work(s: ClientSession) -> CallToolResult:
        return await s.call_tool(tool, arguments)

    assert says.lower() in error(as_user(api_url, key, work)).lower()


def test_a_users_key_never_reaches_another_user(api_url, new_key):
    alice, alice_key = new_key()
    bob, bob_key = new_key()

    async def remember(s: ClientSession) -> str:
        result = ok(await s.call_tool("remember", {"content": "Alice's PIN is 4711", "wait": True}))
        return str(result["id"])

    secret = as_user(api_url, alice_key, remember)

    async def pry(s: ClientSession) -> dict[str, Any]:
        return {
            "recall": ok(await s.call_tool("recall", {"query": "Alice's PIN"})),
            "list": ok(await s.call_tool("list_memories", {})),
            "get": error(await s.call_tool("get_memory", {"id": secret})),
            "update": error(await s.call_tool("update_memory", {"id": secret, "content": "x"})),
            "forget": ok(await s.call_tool("forget", {"ids": [secret]})),
            "forget_all": ok(await s.call_tool("forget_all", {"confirm": "forget everything"})),
        }

    seen = as_user(api_url, bob_key, pry)
    assert seen["recall"]["results"] == []
    assert seen["list"]["memories"] == []
    assert "not found" in seen["get"]
    assert "not found" in seen["update"]
    assert seen["forget"] == {"deleted": [], "not_found": [secret]}
    assert seen["forget_all"]["memories"] == 0

    # naming alice in the header is refused outright, before any tool runs
    answer = post_mcp(
        api_url, FORGET_ALL, {"Authorization": f"Bearer {bob_key}", "X-Engram-User": alice}
    )
    assert answer.status_code == 403, answer.text
    with pytest.raises(BaseException):  # noqa: B017 - the SDK raises an exception group
        as_user(api_url, bob_key, pry, **{"X-Engram-User": alice})

    async def own(s: ClientSession) -> dict[str, Any]:
        return ok(await s.call_tool("get_memory", {"id": secret}))

    assert as_user(api_url, alice_key, own)["content"] == "Alice's PIN is 4711"
    # bob's own header names bob: allowed, and still bob's memory only
    assert as_user(api_url, bob_key, lambda s: s.list_tools(), **{"X-Engram-User": bob})


def test_a_write_carries_the_requests_id(api_url, new_key, db):
    _, key = new_key()
    request_id = f"mcp-{uuid.uuid4().hex}"

    async def remember(s: ClientSession) -> str:
        result = ok(await s.call_tool("remember", {"content": "Gil keeps bees"}))
        return str(result["id"])

    memory_id = as_user(api_url, key, remember, **{"X-Request-ID": request_id})
    [(stored,)] = db.execute(
        "SELECT request_id FROM embed_state WHERE item_id = %s", [memory_id]
    ).fetchall()
    assert stored == request_id


def test_an_admin_key_names_the_user(api_url, new_key):
    user, key = new_key()

    async def remember(s: ClientSession) -> str:
        result = ok(await s.call_tool("remember", {"content": "Erin reads Borges", "wait": True}))
        return str(result["id"])

    memory_id = as_user(api_url, key, remember)
    admin_key = ADMIN_KEY

    async def get(s: ClientSession) -> CallToolResult:
        return await s.call_tool("get_memory", {"id": memory_id})

    named = as_user(api_url, admin_key, get, **{"X-Engram-User": user})
    assert ok(named)["content"] == "Erin reads Borges"
    unnamed = as_user(api_url, admin_key, get)
    assert "X-Engram-User" in error(unnamed)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer egm_0000000000000000_" + "A" * 43}, {"Authorization": "x"}],
)
def test_a_bad_key_is_a_401_before_any_tool_runs(api_url, headers):
    answer = post_mcp(api_url, FORGET_ALL, headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthenticated"

    async def connect() -> None:
        async with connected(api_url, headers):
            pass

    with pytest.raises(BaseException):  # noqa: B017 - the SDK's error for a 401 varies
        asyncio.run(connect())


# --- over stdio: `engram mcp`, forwarding to the running API ------------------------------


# a desktop client starts the bridge from a directory of its own, not the repository
ELSEWHERE = "/"


@asynccontextmanager
async def over_stdio(environ: dict[str, str]) -> AsyncIterator[ClientSession]:
    bridge = StdioServerParameters(
        command=sys.executable,
        args=["-m", "service.ops.cli", "mcp"],
        env={"PATH": os.environ.get("PATH", ""), **environ},
        cwd=ELSEWHERE,
    )
    async with (
        stdio_client(bridge) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_stdio_serves_the_same_tools_bound_to_the_key(api_url, new_key):
    alice, alice_key = new_key()
    _, bob_key = new_key()

    async def work() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with over_stdio({"ENGRAM_URL": api_url, "ENGRAM_API_KEY": alice_key}) as s:
            seen["tools"] = {tool.name for tool in (await s.list_tools()).tools}
            seen["remember"] = ok(
                await s.call_tool("remember", {"content": "Hana grows chillies", "wait": True})
            )
            seen["recall"] = ok(await s.call_tool("recall", {"query": "what does Hana grow?"}))
            seen["bad"] = error(await s.call_tool("recall", {"query": "x", "k": 0}))
        async with over_stdio({"ENGRAM_URL": api_url, "ENGRAM_API_KEY": bob_key}) as s:
            seen["bob"] = error(await s.call_tool("get_memory", {"id": seen["remember"]["id"]}))
        admin = {"ENGRAM_URL": api_url, "ENGRAM_API_KEY": ADMIN_KEY, "ENGRAM_USER": alice}
        async with over_stdio(admin) as s:
            seen["admin"] = ok(await s.call_tool("get_memory", {"id": seen["remember"]["id"]}))
        return seen

    seen = asyncio.run(work())
    assert seen["tools"] == TOOLS
    assert seen["recall"]["results"][0]["id"] == seen["remember"]["id"]
    assert "k" in seen["bad"]
    assert "not found" in seen["bob"]
    assert seen["admin"]["content"] == "Hana grows chillies"


def test_stdio_with_a_bad_key_exits_saying_so(api_url):
    answer = subprocess.run(
        [sys.executable, "-m", "service.ops.cli", "mcp"],
        env={
            "PATH": os.environ.get("PATH", ""),
            "ENGRAM_URL": api_url,
            "ENGRAM_API_KEY": "egm_0000000000000000_" + "A" * 43,
        },
        cwd=ELSEWHERE,
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert answer.returncode == 2
    assert b"engram mcp: cannot use the API's /mcp" in answer.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "service.ops.cli", "mcp"],
        env={"PATH": os.environ.get("PATH", "")},
        cwd=ELSEWHERE,
        capture_output=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert b"ENGRAM_API_KEY" in missing.stderr


def test_bad_calls_log_no_error(client, new_user, caplog):
    """Tool errors are expected: the API logs none of them as a crash (in-process, to see
    its log records)."""
    _, headers = new_user()
    calls = [
        ("remember", {"content": "a\x00b"}),
        ("remember", {"content": "x", "importance": "very"}),
        ("get_memory", {"id": str(uuid.uuid4())}),
        ("forget", {"ids": ["nope"]}),
        ("recall", {"query": "x", "filter": {"$or": "no"}}),
        ("list_memories", {"cursor": "\x00"}),
    ]
    with caplog.at_level(logging.INFO):
        for i, (tool, arguments) in enumerate(calls):
            message = {**FORGET_ALL, "id": i, "params": {"name": tool, "arguments": arguments}}
            answer = client.post(
                "/mcp",
                json=message,
                headers={**headers, "Accept": "application/json, text/event-stream"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["result"]["isError"] is True, (tool, answer.json())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_tool_calls_spend_the_keys_rate_limit(servers, new_key):
    """A recall costs what a search does: past the limit the call is refused (a 429 before
    the tool, or a tool error saying when to retry), never answered. The key is made by the
    module's API: the suite's admin key may have spent more than this API's limit."""
    _, key = new_key()
    headers = {"Authorization": f"Bearer {key}"}
    process, url = start_api(servers, ENGRAM_RATE_LIMIT_PER_MINUTE="20")
    try:
        recall = {**FORGET_ALL, "params": {"name": "recall", "arguments": {"query": "tea"}}}
        answers = [post_mcp(url, recall, headers) for _ in range(6)]
    finally:
        stop_process(process)
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["result"]["isError"] is False, answers[0].text
    refused = [
        a
        for a in answers
        if a.status_code == 429
        or (a.status_code == 200 and "retry after" in str(a.json()["result"]["content"]))
    ]
    assert refused, [(a.status_code, a.text) for a in answers]
