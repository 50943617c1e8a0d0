"""``EngramStore``: LangGraph's ``BaseStore`` on one Engram user's memories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self
from uuid import UUID

from engram_client import AsyncEngram, Engram
from engram_client.types import Memory, MemoryIn, SearchHit
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from langgraph_engram import _mapping as mapping
from langgraph_engram._flow import Flow, Request, arun, run

MAX_K = 100  # Engram's largest search
PAGE = 100  # memories read a page at a time
Refresh = dict[UUID, int]  # the items read whose TTL starts again: memory id -> ttl_seconds


class EngramStore(BaseStore):
    """A LangGraph store whose items are the memories of one Engram user.

    ``user_id`` is the Engram user the store reads and writes: give a key of that user, or
    an admin key. Each item is one memory, whose id is a UUID 5 of its namespace and key (a
    put of the same key is the same memory), whose metadata holds the value's fields (so
    Engram filters them) beside the namespace, label by label, and the key under reserved
    ``langgraph:`` names, and whose content is the text to embed: the value's texts at the
    index ``fields`` (LangGraph's paths; the whole value as JSON by default), one a line.
    The namespace tuple is the collection: a prefix is an equality filter on its labels.
    Memories of the user that are not items are never read as items.

    A batch reads first, then writes: its gets and searches see the store as it was before
    its puts, as in LangGraph's ``InMemoryStore``; of several puts of one key the last wins.
    Every write is checked before anything is sent, and all of a batch's puts and deletes
    are one Engram request (``replace`` and ``delete``), one transaction: written whole or
    not at all.

    ``ttl`` (``default_ttl`` and ``refresh_on_read``) works as LangGraph's stores' does:
    minutes, made Engram's ``ttl_seconds``; an expired item is gone from every read at
    once. With ``wait`` (the default) a put returns once its item is embedded, so a search
    right after finds it.
    """

    supports_ttl = True

    def __init__(
        self,
        user_id: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        client: Engram | None = None,
        aclient: AsyncEngram | None = None,
        index: Mapping[str, Any] | None = None,
        ttl: TTLConfig | None = None,
        wait: bool = True,
        timeout: float = 60.0,
    ) -> None:
        if index is not None and ({"dims", "embed"} & set(index)):
            raise ValueError("Engram embeds on the server: index takes 'fields' only")
        self.user_id = user_id
        self.fields: list[str] = list((index or {}).get("fields") or ["$"])
        self.ttl_config = ttl
        self.wait = wait
        self._owned = (client is None, aclient is None)
        self.client = client or Engram(url, api_key, timeout=timeout)
        self.aclient = aclient or AsyncEngram(url, api_key, timeout=timeout)

    # --- the two ways in ------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations; their results in order."""
        return run(self._batch(list(ops)), self.client)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations on the async client; their results in order."""
        return await arun(self._batch(list(ops)), self.aclient)

    def close(self) -> None:
        """Close the blocking client, if the store made it."""
        if self._owned[0]:
            self.client.close()

    async def aclose(self) -> None:
        """Close both clients the store made."""
        self.close()
        if self._owned[1]:
            await self.aclient.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- a batch --------------------------------------------------------------------------

    def _batch(self, ops: list[Op]) -> Flow[list[Result]]:
        for op in ops:
            _check(op)
        results: list[Result] = [None] * len(ops)
        refresh: Refresh = {}
        yield from self._gets(ops, results, refresh)
        yield from self._searches(ops, results, refresh)
        yield from self._listings(ops, results, refresh)
        if refresh:  # the TTLs of the items read start again (an item gone since is skipped)
            yield [
                Request(
                    "update_memory",
                    (self.user_id, memory_id),
                    {"ttl_seconds": seconds},
                    missing=True,
                )
                for memory_id, seconds in refresh.items()
            ]
        yield from self._writes(ops)
        return results

    def _gets(self, ops: list[Op], results: list[Result], refresh: Refresh) -> Flow[None]:
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        if not gets:
            return
        found: list[Memory | None] = yield [
            Request(
                "get_memory", (self.user_id, mapping.item_id(op.namespace, op.key)), missing=True
            )
            for _, op in gets
        ]
        for (i, op), memory in zip(gets, found, strict=True):
            if memory is None or not mapping.is_item(memory.metadata):
                continue
            results[i] = mapping.item_of(memory)
            _note_read(refresh, memory.id, memory.metadata, op.refresh_ttl)

    def _searches(self, ops: list[Op], results: list[Result], refresh: Refresh) -> Flow[None]:
        searches = [(i, op) for i, op in enumerate(ops) if isinstance(op, SearchOp) and op.query]
        if not searches:
            return
        plans = [self._search_plan(op, indexed=True, k=op.offset + op.limit) for _, op in searches]
        answers = yield [request for request in plans if request is not None]
        hits = iter(answers)
        short: list[tuple[SearchOp, list[SearchItem]]] = []
        for (i, op), request in zip(searches, plans, strict=True):
            found = self._kept(op, next(hits).results if request is not None else [])
            kept = found[op.offset : op.offset + op.limit]
            items = [mapping.hit_item(hit) for hit in kept]
            results[i] = items
            _note_hits(refresh, kept, op.refresh_ttl)
            if len(kept) < op.limit:
                short.append((op, items))
        yield from self._fill(short, refresh)

    def _fill(self, short: list[tuple[SearchOp, list[SearchItem]]], refresh: Refresh) -> Flow[None]:
        """Items without text to embed come after the ranked ones while there is room, as
        in LangGraph's ``InMemoryStore``."""
        if not short:
            return
        plans = [
            self._search_plan(op, indexed=False, k=op.limit - len(found)) for op, found in short
        ]
        answers = yield [request for request in plans if request is not None]
        hits = iter(answers)
        for (op, found), request in zip(short, plans, strict=True):
            extra = self._kept(op, next(hits).results if request is not None else [])
            extra = extra[: op.limit - len(found)]
            found.extend(mapping.hit_item(hit, scored=False) for hit in extra)
            _note_hits(refresh, extra, op.refresh_ttl)

    def _search_plan(self, op: SearchOp, *, indexed: bool, k: int) -> Request | None:
        """The Engram search for the ``k`` best items of ``op`` (more when part of its
        filter is checked here only); None when none is wanted."""
        server, exact = mapping.server_filter(op.namespace_prefix, op.filter, indexed=indexed)
        k = k if exact else MAX_K
        if k <= 0:
            return None
        options = {"k": k, "filter": server, "mode": "vector", "types": ["memory"]}
        return Request("search", (self.user_id, op.query), options)

    @staticmethod
    def _kept(op: SearchOp, hits: list[SearchHit]) -> list[SearchHit]:
        # Engram's filter says what it can; the rest (and JSON containment's extra matches,
        # such as a list holding the value) is checked here
        return [
            hit
            for hit in hits
            if mapping.is_item(hit.metadata)
            and mapping.in_prefix(mapping.namespace_of(hit.metadata), op.namespace_prefix)
            and mapping.passes(mapping.value_of(hit.metadata), op.filter)
        ]

    def _listings(self, ops: list[Op], results: list[Result], refresh: Refresh) -> Flow[None]:
        """Searches without a query and namespace listings: the memories Engram's filter
        keeps (the namespace's labels, the value's fields where it can say them), read
        whole, a listing for each different filter."""
        filters = {i: _listing_filter(op) for i, op in enumerate(ops) if _lists(op)}
        if not filters:
            return
        distinct = {mapping.canonical(f): f for f in filters.values()}
        answers: list[list[Memory]] = yield [
            Request(
                "list_memories", (self.user_id,), {"page_size": PAGE, "filter": f}, listing=True
            )
            for f in distinct.values()
        ]
        found = dict(zip(distinct, answers, strict=True))
        for i, conditions in filters.items():
            op = ops[i]
            memories = [
                m for m in found[mapping.canonical(conditions)] if mapping.is_item(m.metadata)
            ]
            if isinstance(op, SearchOp):
                results[i] = self._listed(op, memories, refresh)
            elif isinstance(op, ListNamespacesOp):
                results[i] = _namespaces(op, memories)

    def _listed(self, op: SearchOp, memories: list[Memory], refresh: Refresh) -> list[Item]:
        """A search without a query: the items under the prefix passing the filter, the
        latest put first."""
        found = [
            memory
            for memory in memories
            if mapping.in_prefix(mapping.namespace_of(memory.metadata), op.namespace_prefix)
            and mapping.passes(mapping.value_of(memory.metadata), op.filter)
        ]
        items = sorted(
            (mapping.search_item_of(memory) for memory in found),
            key=lambda item: (item.updated_at, item.created_at),
            reverse=True,
        )[op.offset : op.offset + op.limit]
        kept = {(item.namespace, item.key) for item in items}
        for memory in found:
            if (mapping.namespace_of(memory.metadata), memory.metadata[mapping.KEY]) in kept:
                _note_read(refresh, memory.id, memory.metadata, op.refresh_ttl)
        return list(items)

    def _writes(self, ops: list[Op]) -> Flow[None]:
        """Every put and delete of the batch in one Engram request, one transaction: a
        known item takes its new value and text (``replace``), deletes go with it."""
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if isinstance(op, PutOp):
                puts.pop((op.namespace, op.key), None)  # the last put of a key wins
                puts[(op.namespace, op.key)] = op
        if not puts:
            return
        now = datetime.now(UTC)
        stores = [self._memory(op, now) for op in puts.values() if op.value is not None]
        deletes = [
            mapping.item_id(op.namespace, op.key) for op in puts.values() if op.value is None
        ]
        options = {"wait": self.wait, "replace": True, "delete": deletes}
        yield Request("add_memories", (self.user_id, stores), options)

    def _memory(self, op: PutOp, now: datetime) -> MemoryIn:
        value = mapping.check_value(op.value or {})
        text = "" if op.index is False else mapping.index_text(value, self._fields(op))
        metadata = mapping.metadata_of(
            op.namespace, op.key, value, indexed=bool(text), ttl=op.ttl, now=now
        )
        return MemoryIn(
            id=mapping.item_id(op.namespace, op.key),
            content=text or mapping.placeholder(op.namespace, op.key),
            metadata=metadata,
            ttl_seconds=mapping.ttl_seconds(op.ttl),
        )

    def _fields(self, op: PutOp) -> Sequence[str]:
        return self.fields if op.index is None else list(op.index or ())


def _lists(op: Op) -> bool:
    return isinstance(op, ListNamespacesOp) or (isinstance(op, SearchOp) and not op.query)


def _listing_filter(op: Op) -> dict[str, Any]:
    """Engram's filter for the memories a listing may need (a superset: what it cannot say,
    such as a suffix, is checked here)."""
    if isinstance(op, SearchOp):
        return mapping.server_filter(op.namespace_prefix, op.filter)[0]
    assert isinstance(op, ListNamespacesOp)
    conditions = op.match_conditions or ()
    prefixes = [tuple(c.path) for c in conditions if c.match_type == "prefix"]
    return mapping.namespace_filter(
        prefixes, depth=max((len(c.path) for c in conditions), default=0)
    )


def _note_read(
    refresh: Refresh, memory_id: UUID, metadata: Mapping[str, Any], wanted: bool
) -> None:
    """Remember to start the TTL of an item read again, if it has one and that is wanted."""
    seconds = mapping.ttl_seconds(mapping.ttl_of(metadata))
    if wanted and seconds is not None:
        refresh[memory_id] = seconds


def _note_hits(refresh: Refresh, hits: list[SearchHit], wanted: bool) -> None:
    for hit in hits:
        _note_read(refresh, hit.id, hit.metadata, wanted)


def _namespaces(op: ListNamespacesOp, memories: list[Memory]) -> list[tuple[str, ...]]:
    """The namespaces holding items, matching every condition, cut to ``max_depth``,
    sorted; as LangGraph's ``InMemoryStore`` lists them."""
    namespaces = {mapping.namespace_of(memory.metadata) for memory in memories}
    conditions = op.match_conditions or ()
    found = {ns for ns in namespaces if all(mapping.matches(c, ns) for c in conditions)}
    if op.max_depth is not None:
        found = {ns[: op.max_depth] for ns in found}
    return sorted(found)[op.offset : op.offset + op.limit]


def _check(op: Op) -> None:
    """Refuse an operation Engram could not answer as LangGraph means it, before any
    request of the batch is sent."""
    if isinstance(op, GetOp):
        mapping.check_namespace(op.namespace, prefix=True)
        _check_key(op.key)
    elif isinstance(op, PutOp):
        mapping.check_namespace(op.namespace)
        _check_key(op.key)
        if op.value is not None:
            mapping.check_value(op.value)
        if op.index not in (None, False) and not (
            isinstance(op.index, list | tuple) and all(isinstance(f, str) for f in op.index)
        ):
            raise ValueError(f"index must be False or a list of field paths, not {op.index!r}")
        if op.ttl is not None and not (isinstance(op.ttl, int | float) and op.ttl > 0):
            raise ValueError(f"ttl must be a positive number of minutes, not {op.ttl!r}")
    elif isinstance(op, SearchOp):
        mapping.check_namespace(op.namespace_prefix, prefix=True)
        _check_window(op.limit, op.offset)
        if op.query and op.offset + op.limit > MAX_K:
            raise ValueError(
                f"a search with a query reaches the best {MAX_K} items at most: "
                f"offset + limit is {op.offset + op.limit}"
            )
    elif isinstance(op, ListNamespacesOp):
        for condition in op.match_conditions or ():
            mapping.check_namespace(tuple(condition.path), prefix=True)
            if condition.match_type not in ("prefix", "suffix"):
                raise ValueError(f"unsupported match type: {condition.match_type!r}")
        _check_window(op.limit, op.offset)
        if op.max_depth is not None and op.max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, not {op.max_depth}")
    else:
        raise ValueError(f"unknown operation: {type(op).__name__}")


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise ValueError(f"a key must be a string, not {type(key).__name__}")


def _check_window(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative: {limit}, {offset}")
