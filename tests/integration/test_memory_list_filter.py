"""Listing memories with a metadata filter (``GET .../memories?filter=``): search's filter
language applied on the server, with paging, and bad filters as 422s. API in-process,
real Postgres and Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest

ITEMS = [
    {"content": "one", "metadata": {"ns": ["a", "b"], "depth": 2, "tag": "x", "n": 1}},
    {"content": "two", "metadata": {"ns": ["a"], "depth": 1, "tag": "y", "n": 2}},
    {"content": "three", "metadata": {"ns": ["c"], "depth": 1, "n": 3}},
    {"content": "four", "metadata": {"tag": "x", "n": 4.5}},
    {"content": "five", "metadata": {}},
]


@pytest.fixture
def user(client: Any, new_user: Any) -> tuple[str, dict[str, str]]:
    user_id, headers = new_user()
    for item in ITEMS:  # one a request, so that each is newer than the one before
        answer = client.post(
            f"/v1/users/{user_id}/memories", json={"memories": [item]}, headers=headers
        )
        assert answer.status_code == 202, answer.text
    return user_id, headers


def listed(client: Any, user: tuple[str, dict[str, str]], conditions: Any, **params: Any) -> Any:
    user_id, headers = user
    query = {"filter": json.dumps(conditions), **params}
    return client.get(f"/v1/users/{user_id}/memories", params=query, headers=headers)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"tag": "x"}, ["four", "one"]),
        ({"depth": 1, "ns": ["a"]}, ["two"]),
        ({"n": {"$gte": 2}}, ["four", "three", "two"]),
        ({"n": {"$lt": 2.5}, "tag": {"$ne": "y"}}, ["one"]),
        ({"$or": [{"tag": "y"}, {"depth": {"$exists": False}}]}, ["five", "four", "two"]),
        ({"tag": {"$in": ["x", "z"]}}, ["four", "one"]),
        ({}, ["five", "four", "three", "two", "one"]),
        ({"tag": "none"}, []),
    ],
)
def test_a_filter_keeps_the_matching_memories_newest_first(client, user, conditions, expected):
    answer = listed(client, user, conditions)
    assert answer.status_code == 200, answer.text
    assert [m["content"] for m in answer.json()["memories"]] == expected


def test_pages_of_a_filtered_list_add_up_to_it(client, user):
    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = listed(client, user, {"n": {"$gt": 1}}, **params).json()
        seen += [m["content"] for m in page["memories"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == ["four", "three", "two"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "filter must be a JSON object"),
        ('["tag", "x"]', "filter must be a JSON object"),
        ('{"tag": {"$regex": "x"}}', "unknown filter operator"),
        ('{"bad key!": 1}', "invalid filter key"),
        ('{"flag": {"$gt": true}}', "range operators take a number or a string"),
        ('{"tag": "a\\u0000b"}', "must not contain NUL characters"),
        ('{"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}', "nested deeper than"),
    ],
)
def test_a_bad_filter_is_a_422_saying_why(client, user, text, says):
    user_id, headers = user
    answer = client.get(f"/v1/users/{user_id}/memories", params={"filter": text}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["error"]["message"]
