"""Which metadata documents a filter's matches must contain: what the metadata index finds
for a selective search (``models.search.filters.containing``)."""

from __future__ import annotations

from typing import Any

import pytest

from models.search.filters import FilterCompiler, containing


@pytest.mark.parametrize(
    ("conditions", "documents"),
    [
        ({"topic": "coffee"}, [{"topic": "coffee"}]),
        ({"topic": {"$eq": "tea"}}, [{"topic": "tea"}]),
        ({"n": {"$in": [1, 2]}}, [{"n": 1}, {"n": 2}]),
        # the fewest documents among the conditions that must all hold
        ({"n": {"$in": [1, 2]}, "topic": "tea"}, [{"topic": "tea"}]),
        ({"year": {"$gte": 2020}, "topic": "tea"}, [{"topic": "tea"}]),
        ({"$and": [{"year": {"$lt": 3}}, {"a": 1}]}, [{"a": 1}]),
        ({"$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]}, [{"a": 1}, {"b": 2}, {"b": 3}]),
        ({"tags": ["x", "y"]}, [{"tags": ["x", "y"]}]),
        # nothing the index can find: a range, a presence, a negation, an $or with one
        ({"year": {"$gte": 2020}}, None),
        ({"draft": {"$exists": False}}, None),
        ({"topic": {"$ne": "tea"}}, None),
        ({"n": {"$nin": [1]}}, None),
        ({"$or": [{"a": 1}, {"year": {"$gt": 1}}]}, None),
        ({}, None),
    ],
)
def test_the_documents_a_filters_matches_contain(
    conditions: dict[str, Any], documents: list[dict[str, Any]] | None
) -> None:
    FilterCompiler().compile(conditions)  # a filter the compiler accepts
    assert containing(conditions) == documents
