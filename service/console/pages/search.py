"""The search playground and the context preview, on the routes' own answers
(``answer_search``, ``answer_context``)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post

from models.errors import InvalidInput
from models.types import Principal
from service.console.render import FORM, page
from service.console.session import PATH, USER_PAGE_GUARDS, caller
from service.http.routes.context import ContextIn, answer_context
from service.http.routes.search import SearchIn, answer_search
from service.http.runtime import Runtime

T = TypeVar("T")

SEARCH_DEFAULTS = {
    "query": "", "vector": "", "mode": "vector", "k": "10", "threshold": "", "filter": "",
    "session_id": "", "space": "", "types": ["memory", "chunk"], "diversity": "0",
    "recency": "0", "importance": "0", "half_life_days": "30", "fusion_method": "scores",
    "fusion_vector": "1", "fusion_text": "1", "fusion_k": "5", "fusion_turns": "0.2",
    "fusion_reach": "3", "neighbors": "0", "language": "",
}  # fmt: skip
CONTEXT_DEFAULTS = {
    "query": "", "max_tokens": "1000", "session_id": "", "k": "50", "mode": "hybrid",
    "neighbors": "1", "floor": "0.25", "threshold": "",
}  # fmt: skip


class SearchPages(Controller):
    path = f"{PATH}/users/{{user_id:str}}"
    guards = USER_PAGE_GUARDS

    @get("/search")
    async def search_form(
        self, request: Request[Any, Any, Any], user_id: str, runtime: Runtime
    ) -> Response[str]:
        return _search_page(request, runtime, user_id, SEARCH_DEFAULTS)

    @post("/search", opt=FORM)
    async def search(
        self, request: Request[Any, Any, Any], user_id: str, runtime: Runtime
    ) -> Response[str]:
        """Run the search the form describes: each hit with its score and similarity."""
        form = await request.form()
        given = {**SEARCH_DEFAULTS, **dict(form.items()), "types": form.getall("types", [])}
        try:
            results = await answer_search(runtime, caller(request), user_id, _search_in(given))
        except InvalidInput as exc:
            return _search_page(request, runtime, user_id, given, error=str(exc), status=422)
        return _search_page(request, runtime, user_id, given, results=results)

    @get("/context")
    async def context_form(self, request: Request[Any, Any, Any], user_id: str) -> Response[str]:
        return page(request, "context.html", user_id=user_id, form=CONTEXT_DEFAULTS)

    @post("/context", opt=FORM)
    async def context(
        self, request: Request[Any, Any, Any], user_id: str, runtime: Runtime
    ) -> Response[str]:
        """The context the form asks for, as the prompt would get it, with its token count."""
        form = await request.form()
        given = {**CONTEXT_DEFAULTS, **dict(form.items())}
        principal: Principal = caller(request)
        try:
            context = await answer_context(runtime, principal, user_id, _context_in(given))
        except InvalidInput as exc:
            return page(
                request, "context.html", status=422, user_id=user_id, form=given, error=str(exc)
            )
        return page(request, "context.html", user_id=user_id, form=given, context=context)


def _search_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    user_id: str,
    form: dict[str, Any],
    *,
    results: Any = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    return page(
        request, "search.html", status=status, user_id=user_id, form=form, results=results,
        error=error, spaces=runtime.spaces.names(),
    )  # fmt: skip


def _search_in(form: dict[str, Any]) -> SearchIn:
    """The search the form describes, checked as the route checks a request's body."""
    body: dict[str, Any] = {
        "query": form["query"] or None,
        "vector": _json(form["vector"], "vector", list),
        "mode": form["mode"],
        "k": _number(form["k"], "k", int),
        "threshold": _number(form["threshold"], "threshold", float),
        "types": form["types"] or None,
        "filter": _json(form["filter"], "filter", dict),
        "session_id": form["session_id"] or None,
        "space": form["space"] or None,
        "diversity": _number(form["diversity"], "diversity", float) or 0.0,
        "neighbors": _number(form["neighbors"], "neighbors", int) or 0,
        "language": form["language"] or None,
        "fusion": _given(
            method=form["fusion_method"],
            vector=_number(form["fusion_vector"], "fusion vector weight", float),
            text=_number(form["fusion_text"], "fusion text weight", float),
            k=_number(form["fusion_k"], "fusion k", int),
            turns=_number(form["fusion_turns"], "fusion turns", float),
            reach=_number(form["fusion_reach"], "fusion reach", int),
        ),
    }
    recency = _number(form["recency"], "recency", float) or 0.0
    importance = _number(form["importance"], "importance", float) or 0.0
    if recency or importance:
        body["weights"] = {
            "recency": recency,
            "importance": importance,
            "half_life_days": _number(form["half_life_days"], "half-life", float),
        }
    return _convert(body, SearchIn)


def _context_in(form: dict[str, Any]) -> ContextIn:
    body = {
        "query": form["query"],
        "max_tokens": _number(form["max_tokens"], "max tokens", int),
        "session_id": form["session_id"] or None,
        "k": _number(form["k"], "k", int),
        "mode": form["mode"],
        "neighbors": _number(form["neighbors"], "neighbors", int),
        "floor": _number(form["floor"], "floor", float),
        "threshold": _number(form["threshold"], "threshold", float),
    }
    return _convert(
        {k: v for k, v in body.items() if v is not None or k == "session_id"}, ContextIn
    )


def _given(**fields: Any) -> dict[str, Any]:
    """The fields given (a blank one takes its default)."""
    return {name: value for name, value in fields.items() if value is not None}


def _convert(body: dict[str, Any], into: type[T]) -> T:
    try:
        return msgspec.convert(_given(**body), into)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from None


def _number(text: str, name: str, kind: type[int] | type[float]) -> Any:
    text = str(text).strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise InvalidInput(f"{name} must be {noun}") from None


def _json(text: str, name: str, kind: type[Any]) -> Any:
    text = str(text).strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name} is not JSON: {exc.msg}") from None
    if not isinstance(value, kind):
        shape = "an array of numbers" if kind is list else 'an object, like {"topic": "travel"}'
        raise InvalidInput(f"{name} must be {shape}")
    return value
