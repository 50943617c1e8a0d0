"""Context for the next prompt: relevant memories and the latest messages, within a budget.

The packing order (docs/api.md): the latest messages of the session first, newest back,
until half the budget is used; then memories by relevance until the budget is full; then,
if room is left, older messages. A memory that is one of the packed messages, or whose
text is already packed, is left out. The text lists the memories, then the messages in
the order they were said.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from psycopg import AsyncConnection

from models.db.scope import on_connection
from models.embedding.spaces import Space
from models.ingest.tokens import TokenCounter
from models.search.planner import search
from models.search.query import SearchQuery
from models.store import sessions
from models.store.sessions import Message
from models.types import Context as Context
from models.types import ContextMemory as ContextMemory
from models.types import SearchHit

LATEST_MESSAGES = 200  # the most messages of a session considered
MEMORIES_HEADER = "Relevant memories:"
MESSAGES_HEADER = "Recent conversation:"


def pack(
    hits: Sequence[SearchHit],
    latest: Sequence[Message],
    *,
    max_tokens: int,
    count: TokenCounter,
) -> Context:
    """``hits`` best first; ``latest`` newest first. A line is counted only while it may
    still fit: every word costs at least a token, so a line of more words than the room left
    is passed over uncounted, and nothing more is counted once the budget is full."""
    budget = max_tokens - count(MEMORIES_HEADER) - count(MESSAGES_HEADER)
    used = 0
    messages: list[Message] = []
    memories: list[SearchHit] = []

    def fits(line: str) -> bool:
        nonlocal used
        if used + len(line.split()) > budget:  # a lower bound of its tokens: no need to count
            return False
        cost = count(line)
        if used + cost > budget:
            return False
        used += cost
        return True

    remaining = list(latest)
    while remaining and used < budget // 2 and fits(_line(remaining[0])):
        messages.append(remaining.pop(0))
    packed_ids = {m.memory_id for m in messages}
    packed_texts = {m.content for m in messages}
    for hit in hits:
        if used >= budget:
            break
        if hit.id in packed_ids or hit.content in packed_texts:
            continue
        if fits(f"- {hit.content}"):
            memories.append(hit)
            packed_texts.add(hit.content)
    while remaining and fits(_line(remaining[0])):
        messages.append(remaining.pop(0))
    messages.reverse()  # as they were said

    sections = []
    if memories:
        sections.append("\n".join([MEMORIES_HEADER, *(f"- {h.content}" for h in memories)]))
    if messages:
        sections.append("\n".join([MESSAGES_HEADER, *(_line(m) for m in messages)]))
    text = "\n\n".join(sections)
    return Context(
        text=text,
        tokens=count(text) if text else 0,
        max_tokens=max_tokens,
        memories=[
            ContextMemory(id=h.id, content=h.content, score=h.score, metadata=h.metadata)
            for h in memories
        ],
        messages=messages,
    )


async def build_context(
    conn: AsyncConnection,
    space: Space,
    user_id: str,
    query: SearchQuery,
    *,
    session_id: str | None,
    max_tokens: int,
    count: TokenCounter,
    exact_max_rows: int,
    ef_search: int,
) -> Context:
    """Search the user's memories and read the session's latest messages, then pack them."""
    latest = (
        await sessions.latest_messages(conn, user_id, session_id, limit=LATEST_MESSAGES)
        if session_id
        else []
    )
    # last: the search's HNSW settings last to the end of the transaction
    read = functools.partial(on_connection, conn)
    hits = await search(
        read, space, user_id, query, exact_max_rows=exact_max_rows, ef_search=ef_search
    )
    # counting tokens is CPU work: off the event loop
    return await asyncio.to_thread(pack, hits, latest, max_tokens=max_tokens, count=count)


def _line(message: Message) -> str:
    return f"{message.role}: {message.content}"
