"""The console's sign-in and forms through Litestar's test client, in-process over the real
servers: the session cookie's attributes, keys refused, CSRF, a user key kept to its user,
sign-out and revocation, failed sign-ins counted as the API's failed keys."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from support.api import ADMIN, add_memories
from support.processes import ADMIN_KEY

from models.embedding.spaces import MINILM_384
from service.http.app import create_app
from service.http.ratelimit import WINDOW_SECONDS

COOKIE = "engram_console"

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def console(client: TestClient[Any]) -> Iterator[TestClient[Any]]:
    """The suite's client without cookies before and after: a browser of its own."""
    client.cookies.clear()
    yield client
    client.cookies.clear()


def form_token(page: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', page)
    assert found, "the page has no form token"
    return found.group(1)


def sign_in(console: TestClient[Any], key: str) -> Any:
    token = form_token(console.get("/console/sign-in").text)
    return console.post(
        "/console/sign-in",
        data={"key": key, "_csrf_token": token},
        follow_redirects=False,
    )


def test_signing_in_sets_a_session_cookie_for_the_console_only(console):
    answer = sign_in(console, ADMIN_KEY)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/users"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "path=/console" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert not attributes & {"max-age", "expires"}  # gone with the browser's session
    assert "secure" not in attributes  # plain http here; https requests get Secure
    page = console.get("/console/users")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_bad_key_is_refused_with_the_form_again(console):
    answer = sign_in(console, "not-a-key")
    assert answer.status_code == 401
    assert "That key is not valid" in answer.text
    assert COOKIE not in console.cookies
    assert console.get("/console/users", follow_redirects=False).headers["location"] == (
        "/console/sign-in?next=%2Fconsole%2Fusers"
    )


def test_a_form_without_its_token_is_refused_and_changes_nothing(console, new_user):
    user, headers = new_user()
    memory = add_memories(console, user, headers, ["keep me"])[0]
    sign_in(console, ADMIN_KEY)
    delete = f"/console/users/{user}/memories/{memory['id']}/delete"
    assert console.post(delete, data={}).status_code == 403
    assert console.post(delete, data={"_csrf_token": "forged"}).status_code == 403
    assert (
        console.get(f"/v1/users/{user}/memories/{memory['id']}", headers=ADMIN).status_code == 200
    )
    token = form_token(console.get(f"/console/users/{user}/memories/{memory['id']}").text)
    answer = console.post(delete, data={"_csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert (
        console.get(f"/v1/users/{user}/memories/{memory['id']}", headers=ADMIN).status_code == 404
    )


def test_a_user_key_sees_its_user_only(console, new_user):
    user, headers = new_user()
    other, other_headers = new_user()
    memory = add_memories(console, other, other_headers, ["not yours"])[0]
    key = headers["Authorization"].split()[1]
    assert sign_in(console, key).headers["location"] == f"/console/users/{user}"
    assert console.get(f"/console/users/{user}/memories").status_code == 200
    for path in (
        "/console/users",
        f"/console/users/{other}",
        f"/console/users/{other}/memories",
        f"/console/users/{other}/memories/{memory['id']}",
        f"/console/users/{other}/sessions",
        f"/console/users/{other}/search",
        "/console/jobs",
        "/console/keys",
        "/console/audit",
        "/console/status",
    ):
        answer = console.get(path)
        assert answer.status_code == 403, path
        assert "not yours" not in answer.text
    # another user's memory under the key's own user: not found
    assert console.get(f"/console/users/{user}/memories/{memory['id']}").status_code == 404


def test_signing_out_forgets_the_key(console):
    sign_in(console, ADMIN_KEY)
    token = form_token(console.get("/console/users").text)
    answer = console.post("/console/sign-out", data={"_csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert any(
        c.startswith(f'{COOKIE}=""') or c.startswith(f"{COOKIE}=;")
        for c in answer.headers.get_list("set-cookie")
    )
    assert COOKIE not in console.cookies
    assert console.get("/console/users", follow_redirects=False).status_code == 303


def test_a_revoked_key_is_signed_out_at_once(console):
    created = console.post("/v1/keys", json={}, headers=ADMIN).json()
    sign_in(console, created["key"])
    assert console.get("/console/status").status_code == 200
    assert console.delete(f"/v1/keys/{created['id']}", headers=ADMIN).status_code == 204
    answer = console.get("/console/status", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        "/console/sign-in?signed_out=invalid&next=%2Fconsole%2Fstatus",
    )


def test_bad_parameters_are_a_page_with_a_4xx(console, new_user):
    user, _ = new_user()
    sign_in(console, ADMIN_KEY)
    for path in (
        f"/console/users/{user}/memories?state=gone",
        f"/console/users/{user}/memories?cursor=%%%",
        f"/console/users/{user}/memories?metadata=[1",
        "/console/users/bad%20id",
        "/console/audit?since=yesterday",
        "/console/status?refresh=1",
    ):
        answer = console.get(path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), path


@pytest.fixture
def strict_console(settings, embedder) -> Iterator[TestClient[Any]]:
    """An API process allowing 3 requests without a valid key a minute per address, whose
    requests all come from one address no other test uses."""
    server = msgspec.structs.replace(settings.server, failed_keys_per_minute=3)
    app = create_app(
        msgspec.structs.replace(settings, server=server), embedders={MINILM_384.name: embedder}
    )
    address = f"198.19.{random.randrange(256)}.{random.randrange(1, 255)}"

    async def from_one_address(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["client"] = (address, 40000)
        await app(scope, receive, send)

    with TestClient(from_one_address) as client:  # type: ignore[arg-type]
        yield client


def test_failed_sign_ins_count_against_the_address_as_the_apis_failed_keys(strict_console):
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < 10:  # all in one window of the count
        time.sleep(left + 0.5)
    for _ in range(3):
        assert sign_in(strict_console, "egm_0000000000000000_" + "x" * 43).status_code == 401
    refused = sign_in(strict_console, "egm_0000000000000000_" + "y" * 43)
    assert refused.status_code == 429
    assert "text/html" in refused.headers["content-type"]
    # the API's routes see the same count: the address is refused there too
    assert strict_console.get("/v1/users/someone/memories").status_code == 429
    # the admin key is served as ever
    assert sign_in(strict_console, ADMIN_KEY).status_code == 303


def test_over_https_the_session_cookie_is_secure(console):
    page = console.get("https://testserver.local/console/sign-in")
    answer = console.post(
        "https://testserver.local/console/sign-in",
        data={"key": ADMIN_KEY, "_csrf_token": form_token(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


def test_keys_signed_in_with_never_reach_the_logs(console, new_user, caplog):
    caplog.set_level(logging.DEBUG)
    _, headers = new_user()
    key = headers["Authorization"].split()[1]
    sign_in(console, key)
    console.get("/console/spaces")
    sign_in(console, key[:-4] + "AAAA")
    assert key not in caplog.text
    assert key[:-4] not in caplog.text


def test_the_figures_reload_themselves_when_asked(console):
    sign_in(console, ADMIN_KEY)
    for path in ("/console/status", "/console/spaces"):
        assert 'http-equiv="refresh"' not in console.get(path).text
        page = console.get(f"{path}?refresh=5").text
        # without script the page reloads whole; with it, htmx reloads the figures in place
        assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
        assert 'hx-trigger="every 5s"' in page
        assert "Stop reloading" in page


def test_signing_in_returns_to_the_page_asked_for_and_nowhere_else(console, new_user):
    user, _ = new_user()
    asked = f"/console/users/{user}/memories?state=ready"
    sent = console.get(asked, follow_redirects=False).headers["location"]
    page = console.get(sent)
    assert f'name="next" value="{asked.replace("&", "&amp;")}"' in page.text
    answer = console.post(
        "/console/sign-in",
        data={"key": ADMIN_KEY, "next": asked, "_csrf_token": form_token(page.text)},
        follow_redirects=False,
    )
    assert answer.headers["location"] == asked
    console.cookies.clear()
    for elsewhere in ("https://example.com/", "//example.com/console/", "/v1/keys", "/console\\x"):
        page = console.get("/console/sign-in", params={"next": elsewhere})
        assert 'name="next"' not in page.text
        answer = console.post(
            "/console/sign-in",
            data={"key": ADMIN_KEY, "next": elsewhere, "_csrf_token": form_token(page.text)},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/console/users", elsewhere
        console.cookies.clear()
