"""The console's metadata filter on memories reads containment as PostgreSQL's ``@>`` does."""

from __future__ import annotations

import pytest

from service.console.pages.memories import contains


@pytest.mark.parametrize(
    ("metadata", "wanted"),
    [
        ({"topic": "travel", "n": 2}, {"topic": "travel"}),
        ({"n": 1.0}, {"n": 1}),  # numbers by value
        ({"tags": ["a", "b", "c"]}, {"tags": ["c", "a"]}),  # any order, a subset
        ({"tags": [{"k": 1, "v": 2}]}, {"tags": [{"k": 1}]}),
        ({"a": {"b": {"c": None}}}, {"a": {"b": {}}}),
        ({"anything": 1}, {}),
    ],
)
def test_what_holds_the_filter(metadata, wanted):
    assert contains(metadata, wanted)


@pytest.mark.parametrize(
    ("metadata", "wanted"),
    [
        ({"topic": "travel"}, {"topic": "work"}),
        ({}, {"topic": "travel"}),
        ({"flag": True}, {"flag": 1}),  # a boolean is no number
        ({"n": "1"}, {"n": 1}),
        ({"tags": ["a"]}, {"tags": "a"}),  # a nested array holds no bare value
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}),
    ],
)
def test_what_does_not(metadata, wanted):
    assert not contains(metadata, wanted)
