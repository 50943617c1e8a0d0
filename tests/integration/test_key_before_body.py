"""The key is checked before anything reads the body: every route that takes a body answers
a caller without a valid key (401), or with a key for another user (403), whatever the body
holds, and a body it never decoded changes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from support.api import served_openapi

PATHS = served_openapi()["paths"]
BODIED = sorted(
    (method.upper(), path)
    for path, operations in PATHS.items()
    for method, operation in operations.items()
    if path.startswith("/v1/") and "requestBody" in operation
)
GARBAGE = b'{"not": json at all, [' * 1000  # also far larger than any body a route decodes


def concrete(path: str, user: str) -> str:
    path = path.replace("{user_id}", user)
    return re.sub(r"\{[a-z_]+\}", "00000000-0000-0000-0000-000000000001", path)


def test_every_route_with_a_body_is_covered():
    assert len(BODIED) >= 10, BODIED


@pytest.mark.parametrize(("method", "path"), BODIED)
@pytest.mark.parametrize("authorization", ["", "Bearer egm_0000000000000000_" + "x" * 43])
def test_no_valid_key_is_a_401_before_the_body_is_read(client, method, path, authorization):
    answer = client.request(
        method,
        concrete(path, "someone"),
        content=GARBAGE,
        headers={"Authorization": authorization, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(("method", "path"), [r for r in BODIED if "{user_id}" in r[1]])
def test_a_key_for_another_user_is_a_403_before_the_body_is_read(client, new_user, method, path):
    _, headers = new_user()
    answer = client.request(
        method,
        concrete(path, "someone-else"),
        content=GARBAGE,
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 403, answer.text


@pytest.mark.parametrize(("method", "path"), [r for r in BODIED if "{user_id}" not in r[1]])
def test_a_user_key_on_an_admin_route_is_a_403_before_the_body_is_read(
    client, new_user, method, path
):
    _, headers = new_user()
    answer: Any = client.request(
        method, concrete(path, "x"), content=GARBAGE, headers={**headers, "Content-Type": "x/y"}
    )
    assert answer.status_code == 403, answer.text
