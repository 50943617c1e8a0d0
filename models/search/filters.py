"""A small metadata filter language, compiled to parameterized SQL.

    {"topic": "coffee"}                       equality (JSON containment, served by GIN)
    {"year": {"$gte": 2020, "$lt": 2025}}     $eq $ne $gt $gte $lt $lte on numbers or strings
    {"tag": {"$in": ["a", "b"]}}              $in / $nin on scalars
    {"draft": {"$exists": false}}             presence of a key
    {"$or": [{...}, {...}], "$and": [...]}    combinations

Keys name top-level metadata keys and must match ``KEY_RE``; every key and value is a bound
parameter, never SQL text. Anything else (unknown operators, hostile keys, operators on
the wrong types) is InvalidInput: a 422.
"""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from models.errors import InvalidInput

KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,63}")
MAX_CONDITIONS = 64
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_SCALARS = (str, int, float, bool, type(None))


class FilterCompiler:
    """Compiles one filter against a jsonb column; collects the bound parameters."""

    def __init__(self, column: str = "m.metadata", *, prefix: str = "f") -> None:
        self.column = sql.SQL(column)
        self.params: dict[str, Any] = {}
        self._names = (f"{prefix}{n}" for n in itertools.count())
        self._conditions = 0

    def compile(self, conditions: dict[str, Any]) -> sql.Composable:
        """SQL that is true for rows matching ``conditions`` (TRUE for an empty filter)."""
        if not isinstance(conditions, dict):
            raise InvalidInput("filter must be a JSON object")
        parts = [self._entry(key, value) for key, value in conditions.items()]
        return _join(parts, "AND")

    def _entry(self, key: str, value: Any) -> sql.Composable:
        self._conditions += 1
        if self._conditions > MAX_CONDITIONS:
            raise InvalidInput(f"filter has more than {MAX_CONDITIONS} conditions")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidInput(f"{key} takes a non-empty list of filters")
            return _join([self.compile(item) for item in value], key[1:].upper())
        if key.startswith("$"):
            raise InvalidInput(f"unknown filter operator {key!r}")
        if not KEY_RE.fullmatch(key):
            raise InvalidInput(f"invalid filter key {key!r}: use [A-Za-z0-9_.:@-], up to 64")
        if isinstance(value, dict) and any(k.startswith("$") for k in value):
            return _join([self._operator(key, op, arg) for op, arg in value.items()], "AND")
        return self._contains({key: value})

    def _operator(self, key: str, op: str, arg: Any) -> sql.Composable:
        if op == "$eq":
            return self._contains({key: arg})
        if op == "$ne":
            return sql.SQL("NOT {}").format(self._contains({key: arg}))
        if op in _RANGE:
            return self._range(key, _RANGE[op], arg)
        if op in ("$in", "$nin"):
            if (
                not isinstance(arg, list)
                or not arg
                or not all(isinstance(a, _SCALARS) for a in arg)
            ):
                raise InvalidInput(f"{op} takes a non-empty list of scalars")
            any_of = sql.SQL("{} @> ANY({}::jsonb[])").format(
                self.column, self._bind([Jsonb({key: a}) for a in arg])
            )
            return any_of if op == "$in" else sql.SQL("NOT ({})").format(any_of)
        if op == "$exists":
            if not isinstance(arg, bool):
                raise InvalidInput("$exists takes true or false")
            has = sql.SQL("{} ? {}").format(self.column, self._bind(key))
            return has if arg else sql.SQL("NOT ({})").format(has)
        raise InvalidInput(f"unknown filter operator {op!r}")

    def _range(self, key: str, symbol: str, arg: Any) -> sql.Composable:
        if isinstance(arg, bool) or not isinstance(arg, int | float | str):
            raise InvalidInput("range operators take a number or a string")
        kind, cast = ("number", "::numeric") if not isinstance(arg, str) else ("string", "")
        return sql.SQL(
            "(jsonb_typeof({col} -> {key}) = {kind} AND ({col} ->> {key}){cast} "
            + symbol
            + " {arg})"
        ).format(
            col=self.column,
            key=self._bind(key),
            kind=sql.Literal(kind),
            cast=sql.SQL(cast),
            # numbers compare as numeric, exactly, whatever their size (a float8 would fail
            # beyond its range, and round within it)
            arg=self._bind(arg if isinstance(arg, str) else Decimal(str(arg))),
        )

    def _contains(self, value: dict[str, Any]) -> sql.Composable:
        return sql.SQL("{} @> {}").format(self.column, self._bind(Jsonb(value)))

    def _bind(self, value: Any) -> sql.Composable:
        name = next(self._names)
        self.params[name] = value
        return sql.Placeholder(name)


def containing(conditions: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Metadata documents such that an item meeting ``conditions`` (a filter ``compile``
    accepted) contains at least one of them: what the metadata index can find, a superset
    of the matches. None when no condition is an equality the index serves (ranges,
    ``$exists``, ``$ne`` and ``$nin`` alone)."""
    options = [d for key, value in conditions.items() if (d := _documents(key, value))]
    return min(options, key=len) if options else None


def _documents(key: str, value: Any) -> list[dict[str, Any]] | None:
    if key == "$and":
        return _any_of(value)
    if key == "$or":
        parts = [containing(item) for item in value]
        return None if any(p is None for p in parts) else [d for p in parts for d in p or ()]
    if isinstance(value, dict) and any(k.startswith("$") for k in value):
        if "$eq" in value:
            return [{key: value["$eq"]}]
        if "$in" in value:
            return [{key: choice} for choice in value["$in"]]
        return None
    return [{key: value}]


def _any_of(filters: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The fewest documents any one of ``filters`` (all of which must hold) gives."""
    options = [d for item in filters if (d := containing(item))]
    return min(options, key=len) if options else None


def _join(parts: list[sql.Composable], glue: str) -> sql.Composable:
    if not parts:
        return sql.SQL("TRUE")
    return sql.SQL("(") + sql.SQL(f" {glue} ").join(parts) + sql.SQL(")")
