"""API operations as data, without IO: the sync and the async client send the same calls.

An operation is declared once, on ``engram_client._api.Api``, as a method that returns what
to send: a ``Call`` (one request and how to read its answer), a ``Flow`` (a generator that
yields calls and pauses, for waiting), or a ``Call`` of a ``Page`` (a listing that knows the
call for its next page). The ``operation`` and ``listing`` decorators turn such a method
into a real one that hands the work to the client it is called on: ``Engram`` does it
blocking, ``AsyncEngram`` with ``await``. Only that hand-over exists in two flavours.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload
from urllib.parse import quote

import httpx
import msgspec

from engram_client._errors import UnexpectedAnswerError, error_from
from engram_client.types import RateLimit

if TYPE_CHECKING:
    from typing import Self

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "engram-python"
T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request, and how to read its answer."""

    method: str
    path: str
    read: Callable[[bytes], T]
    params: Mapping[str, Any] | None = None
    body: Any = None  # JSON (msgspec encodes Structs, UUIDs, datetimes), or bytes as they are
    media_type: str = "application/json"  # of the body
    files: list[tuple[str, tuple[str, bytes]]] | None = None  # multipart
    form: Mapping[str, str] | None = None  # multipart fields beside the files
    answers: frozenset[int] = field(default_factory=frozenset)  # error statuses read as answers

    def request(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` (or ``AsyncClient.request``)."""
        args: dict[str, Any] = {"method": self.method, "url": self.path, "params": self.params}
        if self.body is not None:
            raw = self.body if isinstance(self.body, bytes) else msgspec.json.encode(self.body)
            args["content"] = raw
            args["headers"] = {"Content-Type": self.media_type}
        if self.files is not None:
            args["files"] = self.files
            args["data"] = self.form
        return args

    def answer(self, response: httpx.Response) -> T:
        """The decoded answer, or the typed ``ApiError`` for an error status."""
        if response.is_error and response.status_code not in self.answers:
            raise error_from(response)
        try:
            return self.read(response.content)
        except msgspec.DecodeError as exc:  # ValidationError is one too
            raise UnexpectedAnswerError(f"{self.method} {self.path}: {exc}") from exc


# A flow yields a Call to get its answer sent back, or a number of seconds to pause.
Flow = Generator["Call[Any] | float", Any, T]


@dataclass(frozen=True)
class Page(Generic[T]):
    """Items of one page of a listing, and the call for the next page (None at the end)."""

    items: list[T]
    following: Call[Page[T]] | None


def client_options(base_url: str | None, api_key: str | None, timeout: float) -> dict[str, Any]:
    """httpx client settings: arguments first, then ENGRAM_URL and ENGRAM_API_KEY."""
    key = api_key or os.environ.get("ENGRAM_API_KEY")
    headers = {"User-Agent": USER_AGENT} | ({"Authorization": f"Bearer {key}"} if key else {})
    return {
        "base_url": base_url or os.environ.get("ENGRAM_URL") or DEFAULT_URL,
        "headers": headers,
        "timeout": timeout,
    }


def flow_of(work: Call[T] | Flow[T]) -> Flow[T]:
    """Any work as a flow: a single call is a flow of one step."""
    if isinstance(work, Call):
        return _single(work)
    return work


def _single(call: Call[T]) -> Flow[T]:
    answer: T = yield call
    return answer


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


def resume(flow: Flow[T], answer: Any) -> Call[Any] | float | Done[T]:
    """The flow's next step, given the answer to its last one (None to start it)."""
    try:
        return flow.send(answer)
    except StopIteration as stop:
        return Done(stop.value)


def json_as(kind: Any) -> Callable[[bytes], Any]:
    """A reader decoding JSON into ``kind`` (a Struct, ``list[Struct]``, ...)."""
    return functools.partial(msgspec.json.decode, type=kind)


def field_of(name: str, kind: Any) -> Callable[[bytes], Any]:
    """A reader decoding ``{name: kind}`` and answering the field alone."""
    wrapper = _wrapper(name, kind)
    return lambda raw: getattr(msgspec.json.decode(raw, type=wrapper), name)


def nothing(raw: bytes) -> None:
    """The reader of answers without a body (204)."""
    return None


@functools.cache
def _wrapper(name: str, kind: Any) -> Any:
    fields: list[tuple[str, Any, Any]] = [(name, kind, msgspec.NODEFAULT)]
    fields.append(("next_cursor", str | int | None, None))
    return msgspec.defstruct(f"{name.title()}Answer", fields, kw_only=True)


def cursor_pages(path: str, name: str, item: type[T], params: dict[str, Any]) -> Call[Page[T]]:
    """A listing answering ``{name: [item, ...], "next_cursor"}``."""
    wrapper = _wrapper(name, list[item])  # type: ignore[valid-type]
    query = {k: v for k, v in params.items() if v is not None}

    def read(raw: bytes) -> Page[T]:
        page = msgspec.json.decode(raw, type=wrapper)
        cursor = page.next_cursor
        following = (
            None if cursor is None else cursor_pages(path, name, item, {**query, "cursor": cursor})
        )
        return Page(getattr(page, name), following)

    return Call("GET", path, read, params=query)


def every_item(call: Call[Page[T]] | None) -> Flow[list[T]]:
    """A listing read to its end, page after page, as one list."""
    items: list[T] = []
    while call is not None:
        page: Page[T] = yield call
        items.extend(page.items)
        call = page.following
    return items


def path(template: str, *parts: object) -> str:
    """``template`` with each ``{}`` replaced by a part, escaped as one path segment."""
    return template.format(*(_segment(str(part)) for part in parts))


def _segment(part: str) -> str:
    escaped = quote(part, safe="")
    # "." and ".." would be resolved away as relative paths: escape their dots too
    return escaped.replace(".", "%2E") if escaped.strip(".") == "" else escaped


def present(**fields: Any) -> dict[str, Any]:
    """The fields given a value (not None)."""
    return {k: v for k, v in fields.items() if v is not None}


def given(**fields: Any) -> dict[str, Any]:
    """The fields given at all (not UNSET): None is a value, e.g. to clear a field."""
    return {k: v for k, v in fields.items() if v is not msgspec.UNSET}


def waiting(wait: bool) -> dict[str, bool]:
    """The body field asking the server to answer once the write is embedded, if asked."""
    return {"wait": True} if wait else {}


def rate_limit_of(headers: httpx.Headers) -> RateLimit | None:
    """What ``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` say; None unless all three
    are there as whole numbers."""
    found = [headers.get(f"RateLimit-{name}", "") for name in ("Limit", "Remaining", "Reset")]
    if not all(value.isascii() and value.isdigit() for value in found):
        return None
    limit, remaining, reset = map(int, found)
    return RateLimit(limit, remaining, reset)


class Client:
    """Base of both clients: what they keep of the answers they read."""

    _rate_limit: RateLimit | None = None

    @property
    def rate_limit(self) -> RateLimit | None:
        """The key's rate limit as the latest answer carrying it said (None before any did)."""
        return self._rate_limit

    def _read(self, call: Call[T], response: httpx.Response) -> T:
        """The call's answer, or its error; what the response says of the rate limit kept."""
        self._rate_limit = rate_limit_of(response.headers) or self._rate_limit
        return call.answer(response)


class Blocking(Client):
    """Base of a client that does its work blocking (``Engram``)."""


class Awaiting(Client):
    """Base of a client whose work is awaited (``AsyncEngram``)."""


class _Method(Generic[P, T]):
    """A method declared once, whose work is handed to the client's ``hand_over`` method."""

    hand_over: str

    def __init__(self, build: Callable[Concatenate[Any, P], T]) -> None:
        self.build = build
        functools.update_wrapper(cast(Any, self), build)  # name and docstring, for help()

    def _bind(self, client: Any) -> Callable[..., Any]:
        build, hand_over = self.build, getattr(client, self.hand_over)

        @functools.wraps(build)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return hand_over(build(client, *args, **kwargs))

        return bound


class operation(_Method[P, "Call[T] | Flow[T]"]):
    """Makes a method that returns a Call or a Flow answer its result on the client."""

    hand_over = "_perform"

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: Blocking, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, client: Awaiting, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        return self if client is None else self._bind(client)


class listing(_Method[P, "Call[Page[T]]"]):
    """Makes a method that returns the call for a first page iterate over every item."""

    hand_over = "_iterate"

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: Blocking, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, client: Awaiting, owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        return self if client is None else self._bind(client)
