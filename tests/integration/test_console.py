"""The web console in a real browser: Playwright driving Debian's Chromium against a real
`engram api` process and a real worker. Sign in (with the keyboard alone too), browse a user,
edit and delete a memory, documents, batches and sessions with their states, search and
preview a context, retry a failed job, fill a space, create and revoke
a key, a user key kept to its user, a form without its token refused, sign-out, and a phone's
screen. With ENGRAM_CONSOLE_SCREENSHOTS set to a folder, the main pages are photographed
into it (``make console-screenshots`` writes docs/console/)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from support.api import ADMIN, add_memories, fail
from support.databases import servers_of_their_own
from support.processes import ADMIN_KEY, Servers, start_api, stop_process, wait_until

CHROMIUM = Path("/usr/bin/chromium")
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = os.environ.get("ENGRAM_CONSOLE_SCREENSHOTS")
# a count read right after a click may read the page being left: assertions wait for theirs
expect.set_options(timeout=30_000)

pytestmark = [
    pytest.mark.usefixtures("worker"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (make install)"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # the suite runs as root in CI, where Chromium's sandbox cannot start
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def api(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


@pytest.fixture
def open_page(browser: Any, api_url: str) -> Iterator[Any]:
    """A new page in a browser context of its own (its own cookies), at a screen size."""
    contexts = []

    def make(viewport: dict[str, int] = LAPTOP, **options: Any) -> Any:
        context = browser.new_context(base_url=api_url, viewport=viewport, **options)
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []  # what the browser complained of: a refused script or style, say
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()


def new_user(api: httpx.Client, prefix: str = "user") -> tuple[str, dict[str, str], str]:
    """A fresh user id, headers with a key of its own, and that key."""
    user_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    answer = api.post("/v1/keys", json={"user_id": user_id}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]
    return user_id, {"Authorization": f"Bearer {key}"}, key


def sign_in(page: Any, key: str) -> None:
    page.goto("/console/sign-in")
    page.get_by_label("Engram key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_an_admin_browses_a_user_edits_and_deletes_a_memory(api, open_page):
    user, headers, _ = new_user(api, "browse")
    kept, edited, doomed = add_memories(
        api,
        user,
        headers,
        ["I moved to Lisbon in March.", "My sister is called Ana.", "Remind me to call the bank."],
        metadata={"topic": "life"},
    )
    page = open_page()
    sign_in(page, ADMIN_KEY)
    assert page.url.endswith("/console/users")
    page.get_by_label("User id starts with").fill(user)
    page.get_by_role("button", name="Find").click()
    row = page.get_by_role("row", name=user)
    assert row.get_by_role("cell").first.inner_text() == "3"  # memories
    row.get_by_role("link", name=user).click()
    page.get_by_role("navigation", name=f"User {user}").get_by_role("link", name="Memories").click()
    items = page.locator("ol.items > li")
    expect(items).to_have_count(3)
    # metadata as fields (a term and its value), not raw JSON
    assert page.locator("dl.meta dt").filter(has_text="topic").count() == 3
    assert "{" not in items.first.inner_text()

    page.get_by_role("link", name="My sister is called Ana.").click()
    states = page.get_by_role("table", name="This memory's job in every space")
    assert "ready" in states.inner_text()
    page.get_by_label("Content").fill("My sister Ana lives in Porto.")
    page.get_by_label("Metadata (a JSON object)").fill('{"topic": "family"}')
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved.").wait_for()
    stored = api.get(f"/v1/users/{user}/memories/{edited['id']}", headers=headers).json()
    assert (stored["content"], stored["metadata"]) == (
        "My sister Ana lives in Porto.",
        {"topic": "family"},
    )

    page.get_by_label("Metadata (a JSON object)").fill("[not json")
    page.get_by_role("button", name="Save changes").click()
    assert "metadata must be a JSON object" in page.get_by_role("alert").inner_text()

    page.goto(f"/console/users/{user}/memories/{doomed['id']}")
    page.get_by_role("button", name="Delete this memory").click()
    page.get_by_text(f"Memory {doomed['id']} was deleted.").wait_for()
    expect(page.locator("ol.items > li")).to_have_count(2)
    gone = api.get(f"/v1/users/{user}/memories/{doomed['id']}", headers=headers)
    assert gone.status_code == 404
    assert api.get(f"/v1/users/{user}/memories/{kept['id']}", headers=headers).status_code == 200


def test_filters_say_when_nothing_matches_and_pages_go_to_the_end(api, open_page):
    user, headers, _ = new_user(api, "pages")
    notes = [{"content": f"note number {n}", "metadata": {"n": n}} for n in range(55)]
    written = api.post(
        f"/v1/users/{user}/memories", json={"memories": notes, "wait": True}, headers=headers
    )
    assert written.status_code == 200, written.text
    page = open_page()
    sign_in(page, ADMIN_KEY)
    page.goto(f"/console/users/{user}/memories")
    expect(page.locator("ol.items > li")).to_have_count(50)
    page.get_by_role("link", name="Next page").click()
    expect(page.locator("ol.items > li")).to_have_count(5)  # 55 in all
    assert page.get_by_text("End of the list").is_visible()

    metadata = page.get_by_label("Metadata filter (JSON, as search takes it)")
    metadata.fill('{"n": {"$gte": 3}, "$or": [{"n": {"$lt": 6}}, {"n": 54}]}')
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("ol.items > li a")).to_have_count(4)
    shown = page.locator("ol.items > li a").all_inner_texts()
    assert sorted(shown) == sorted(f"note number {n}" for n in (3, 4, 5, 54))
    metadata.fill('{"topic": "nowhere"}')
    page.get_by_role("button", name="Filter").click()
    empty = page.get_by_role("status")
    expect(empty).to_contain_text("No memories match")
    assert 'metadata = {"topic": "nowhere"}' in empty.inner_text()
    metadata.fill('{"n": {"$near": 1}}')
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("$near")  # said, as a 422
    page.go_back()
    page.get_by_label("State").select_option("failed")
    page.get_by_label("Metadata filter (JSON, as search takes it)").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("status")).to_contain_text("state = failed")


def test_the_search_playground_and_the_context_preview(api, open_page):
    user, headers, _ = new_user(api, "search")
    add_memories(
        api,
        user,
        headers,
        ["I am allergic to peanuts.", "My favourite city is Kyoto.", "I play the cello."],
    )
    page = open_page()
    sign_in(page, ADMIN_KEY)
    page.goto(f"/console/users/{user}/search")
    page.get_by_label("Query text").fill("what food should I avoid?")
    page.get_by_label("k (results)").fill("2")
    page.get_by_label("Mode").select_option("hybrid")
    page.get_by_role("button", name="Search").click()
    results = page.locator("li.hit")
    expect(results).to_have_count(2)
    first = results.first.inner_text()
    assert "peanuts" in first and "Score" in first and "Similarity" in first
    assert "took" in page.locator("#took").inner_text()
    shot(page, "search")

    page.get_by_label("Least similarity").fill("2")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("threshold")  # above 1: said, no 500

    page.get_by_label("Least similarity").fill("")
    page.get_by_label("Reach (turns)").fill("50")  # the form takes it, the API does not
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("fusion.reach")  # 1..20: said
    page.get_by_label("Reach (turns)").fill("")  # a blank fusion field takes its default
    page.get_by_label("Nearby turns' lift").fill("")
    page.get_by_role("button", name="Search").click()
    expect(results).to_have_count(2)
    assert "peanuts" in results.first.inner_text()

    page.goto(f"/console/users/{user}/context")
    page.get_by_label("Question").fill("what do you know about my food?")
    page.get_by_role("button", name="Preview context").click()
    heading = page.get_by_role("heading", name="of 1000 tokens")
    expect(heading).to_be_visible()
    assert "peanuts" in page.locator("pre.context-text").inner_text()
    shot(page, "context")


def test_documents_batches_and_sessions_with_their_states(api, open_page, db):
    user, headers, _ = new_user(api, "docs")
    written = api.post(
        f"/v1/users/{user}/documents",
        json={
            "documents": [
                {"title": "Handbook", "content": "Holidays are booked in the portal. " * 60},
                {"title": "Menu", "content": "Soup of the day, bread, and tea."},
            ],
            "wait": True,
        },
        headers=headers,
    ).json()
    menu = written["documents"][1]
    chunk = db.execute(
        "SELECT id FROM chunks WHERE user_id = %s AND document_id = %s",
        [user, menu["id"]],
    ).fetchone()[0]
    fail(db, user, str(chunk), error="provider said 400: chunk refused (console test)")
    api.post(f"/v1/users/{user}/sessions", json={"id": "day-1"}, headers=headers)
    turns = [
        {"role": "user", "content": "What is for lunch?"},
        {"role": "assistant", "content": "Soup of the day."},
    ]
    api.post(
        f"/v1/users/{user}/sessions/day-1/messages",
        json={"messages": turns, "wait": True},
        headers=headers,
    )
    page = open_page()
    sign_in(page, ADMIN_KEY)
    page.goto(f"/console/users/{user}/documents")
    rows = page.get_by_role("table", name="Documents, newest first")
    assert "Handbook" in rows.inner_text() and "Menu" in rows.inner_text()
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row").filter(has_text="Menu")).to_have_count(1)
    expect(page.get_by_role("row").filter(has_text="Handbook")).to_have_count(0)
    page.get_by_role("link", name="Menu").click()
    expect(page.locator("ol.items")).to_contain_text("chunk refused (console test)")
    page.get_by_role("link", name="Its batch").click()
    expect(page).to_have_url(re.compile(r"/batches/"))
    fields = page.locator("dl.fields").inner_text()
    assert "Failed\n1" in fields and "Ready\n1" in fields and "Total\n2" in fields
    expect(page.locator("ul.items > li")).to_have_count(2)

    page.get_by_role("navigation", name=f"User {user}").get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name="day-1").click()
    expect(page.locator("ol.turns > li")).to_have_count(2)
    said = page.locator("ol.turns > li").all_inner_texts()
    assert ["What is for lunch?" in said[0], "Soup of the day." in said[1]] == [True, True]
    page.locator("ol.turns > li").first.get_by_role("link", name="its memory").click()
    expect(page.get_by_label("Content")).to_have_value("What is for lunch?")


def test_a_failed_job_is_retried_from_the_console(api, open_page, db):
    user, headers, _ = new_user(api, "retry")
    memory = add_memories(api, user, headers, ["This one will fail once."])[0]
    fail(db, user, memory["id"], error="provider said 400: bad input (console test)")
    page = open_page()
    sign_in(page, ADMIN_KEY)
    page.get_by_role("link", name="Failed jobs").click()
    row = page.get_by_role("row").filter(has_text="console test").filter(has_text=user)
    expect(row).to_have_count(1)
    shot(page, "jobs")
    row.get_by_role("button", name=f"Retry memory {memory['id']}").click()
    page.get_by_text(f"Job {memory['id']} is pending again.").wait_for()

    def ready() -> bool:
        found = api.get(f"/v1/users/{user}/memories/{memory['id']}", headers=headers).json()
        return bool(found["status"] == "ready")

    wait_until(ready, timeout=60, what="the retried memory to be embedded")
    page.reload()
    expect(page.get_by_role("row").filter(has_text=user)).to_have_count(0)


@pytest.fixture
def api_of_its_own(servers: Servers) -> Iterator[str]:
    """An API on a database of its own: a filled space takes every later item of its
    database, so a fill in the suite's database would change what later modules store."""
    with servers_of_their_own(servers, redis=14) as own:
        process, url = start_api(own)
        try:
            yield url
        finally:
            stop_process(process)


def test_a_space_is_filled_from_the_console_and_the_fill_is_audited(api_of_its_own, browser):
    context = browser.new_context(base_url=api_of_its_own, viewport=LAPTOP)
    context.set_default_timeout(30_000)
    page = context.new_page()
    sign_in(page, ADMIN_KEY)
    page.get_by_role("link", name="Spaces").click()
    space = httpx.get(f"{api_of_its_own}/v1/spaces", headers=ADMIN).json()[0]
    progress = page.get_by_role("progressbar").first  # named by its label: "Embedded: n of m"
    assert progress.get_attribute("max") is not None
    assert "Embedded:" in page.locator("label[for=fill-1]").inner_text()
    page.get_by_role("button", name=f"Fill {space['name']} with every existing item").click()
    page.get_by_text(f"Filling {space['name']} with every existing item").wait_for()
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option("space.fill")
    page.get_by_role("button", name="Filter").click()
    entries = page.get_by_role("table", name="Admin actions, newest first")
    expect(entries.get_by_role("row").nth(1)).to_contain_text(space["name"])
    context.close()


def test_the_status_figures_reload_in_place(api, open_page):
    page = open_page()
    sign_in(page, ADMIN_KEY)
    page.goto("/console/status")
    page.get_by_role("link", name="Reload every 5 seconds").click()
    expect(page.get_by_role("link", name="Stop reloading")).to_be_visible()
    page.evaluate("window.stayed = true")  # gone if the page itself were loaded again
    ready = page.get_by_role("row").nth(1).get_by_role("cell").nth(2)
    before = int(ready.inner_text())
    user, headers, _ = new_user(api, "status")
    add_memories(api, user, headers, ["one more", "and another"])
    page.wait_for_function(
        f"() => Number(document.querySelectorAll('#figures tbody tr')[0]"
        f".querySelectorAll('td')[2].textContent) >= {before + 2}",
        timeout=20_000,
    )
    assert page.evaluate("window.stayed") is True
    assert page.errors == []


def test_a_key_is_created_shown_once_and_revoked_and_its_session_ends(api, open_page):
    admin = open_page()
    sign_in(admin, ADMIN_KEY)
    admin.get_by_role("link", name="Keys").click()
    user = f"keyed-{uuid.uuid4().hex[:10]}"
    admin.get_by_label("User id (empty: an admin key)").fill(user)
    admin.get_by_role("button", name="Create key").click()
    secret = admin.get_by_label("Secret").input_value()
    assert secret.startswith("egm_")
    admin.goto("/console/keys")
    assert secret not in admin.content()  # shown once only

    holder = open_page()
    sign_in(holder, secret)
    assert holder.url.endswith(f"/console/users/{user}")

    prefix = secret.split("_")[1]
    admin.get_by_role("button", name=f"Revoke key egm_{prefix}").click()
    admin.get_by_text("is revoked").wait_for()
    holder.get_by_role("link", name="Spaces").click()
    holder.wait_for_url(lambda url: "/console/sign-in?signed_out=invalid" in url)
    expect(holder.get_by_text("the key is no longer valid")).to_be_visible()
    assert (
        api.get(
            f"/v1/users/{user}/memories", headers={"Authorization": f"Bearer {secret}"}
        ).status_code
        == 401
    )


def test_a_user_key_sees_its_user_and_no_other(api, open_page):
    user, headers, key = new_user(api, "own")
    other, other_headers, _ = new_user(api, "other")
    add_memories(api, user, headers, ["mine"])
    theirs = add_memories(api, other, other_headers, ["their secret"])[0]
    page = open_page()
    sign_in(page, key)
    assert page.url.endswith(f"/console/users/{user}")
    nav = page.get_by_role("navigation", name="Console")
    expect(nav).to_be_visible()
    assert nav.get_by_role("link", name="Users").count() == 0
    assert nav.get_by_role("link", name="Keys").count() == 0
    for path in (
        "/console/users",
        f"/console/users/{other}",
        f"/console/users/{other}/memories",
        f"/console/users/{other}/memories/{theirs['id']}",
        f"/console/users/{other}/documents",
        f"/console/users/{other}/sessions",
        f"/console/users/{other}/search",
        "/console/jobs",
        "/console/keys",
        "/console/audit",
        "/console/status",
    ):
        answer = page.goto(path)
        assert answer.status == 403, path
        assert "their secret" not in page.content()
    answer = page.goto(f"/console/users/{user}/memories/{theirs['id']}")
    assert answer.status == 404
    assert "their secret" not in page.content()


def test_a_form_without_its_token_is_refused(api, open_page):
    user, headers, _ = new_user(api, "csrf")
    memory = add_memories(api, user, headers, ["do not delete me"])[0]
    page = open_page()
    sign_in(page, ADMIN_KEY)
    page.goto(f"/console/users/{user}/memories/{memory['id']}")
    # the form as another site would post it: the cookie goes along, the token cannot
    page.locator("form.danger input[name=_csrf_token]").evaluate("input => input.remove()")
    page.get_by_role("button", name="Delete this memory").click()
    assert "did not come from the console" in page.get_by_role("alert").inner_text()
    assert api.get(f"/v1/users/{user}/memories/{memory['id']}", headers=headers).status_code == 200
    forged = page.request.post(
        f"/console/users/{user}/memories/{memory['id']}/delete",
        form={"_csrf_token": "forged"},
    )
    assert forged.status == 403
    assert api.get(f"/v1/users/{user}/memories/{memory['id']}", headers=headers).status_code == 200


def test_signing_out_forgets_the_key(open_page):
    page = open_page()
    sign_in(page, ADMIN_KEY)
    assert any(c["name"] == "engram_console" for c in page.context.cookies())
    cookie = next(c for c in page.context.cookies() if c["name"] == "engram_console")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["expires"]) == (True, "Strict", -1)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out.").wait_for()
    assert not any(c["name"] == "engram_console" for c in page.context.cookies())
    page.goto("/console/status")
    assert "/console/sign-in" in page.url


def test_signing_in_with_the_keyboard_alone(open_page):
    page = open_page()
    page.goto("/console/sign-in")
    assert page.evaluate("document.activeElement.id") == "key"  # the key field has focus
    page.keyboard.type("a wrong key")
    page.keyboard.press("Enter")
    page.get_by_role("alert").wait_for()
    assert page.get_by_label("Engram key").get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "key"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Sign in"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.press("Shift+Tab")
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/users")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # past the header: the page's first field
    assert page.evaluate("document.activeElement.id") == "prefix"


def test_a_phone_sized_screen(api, open_page):
    user, headers, _ = new_user(api, "phone")
    memory = add_memories(api, user, headers, ["Small screens need readable tables."])[0]
    page = open_page(PHONE, is_mobile=True, has_touch=True)
    sign_in(page, ADMIN_KEY)
    for path in (
        f"/console/users?prefix={user}",
        f"/console/users/{user}",
        f"/console/users/{user}/memories",
        f"/console/users/{user}/memories/{memory['id']}",
        f"/console/users/{user}/documents",
        f"/console/users/{user}/sessions",
        f"/console/users/{user}/search",
        f"/console/users/{user}/context",
        "/console/status",
        "/console/jobs",
        "/console/spaces",
        "/console/keys",
        "/console/audit",
    ):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, path  # nothing wider than the screen
    assert page.errors == []  # nothing the Content-Security-Policy refused, no script error
    page.goto(f"/console/users?prefix={user}")
    cell = page.get_by_role("cell").first
    assert "Memories" in page.evaluate(
        "c => getComputedStyle(c, '::before').content", cell.element_handle()
    )
    shot(page, "users-phone")


@pytest.mark.skipif(not SCREENSHOTS, reason="ENGRAM_CONSOLE_SCREENSHOTS names no folder")
def test_screenshots_of_the_main_pages(api, open_page, db):
    user = "alice"  # the servers are the test session's own: the names are free
    for n, other in enumerate(["bob", "carol", "dan"]):
        made = api.post("/v1/keys", json={"user_id": other}, headers=ADMIN).json()
        notes = [f"{other.title()}'s note {i}" for i in range(3 * n + 2)]
        add_memories(api, other, {"Authorization": f"Bearer {made['key']}"}, notes)
    key = api.post("/v1/keys", json={"user_id": user}, headers=ADMIN).json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    memories = add_memories(
        api, user, headers,
        ["Alice moved to Lisbon in March 2026.", "Alice is allergic to peanuts.",
         "Alice's sister Ana lives in Porto.", "Alice prefers window seats on long flights."],
        metadata={"source": "chat", "topic": "profile"},
    )  # fmt: skip
    session = api.post(
        f"/v1/users/{user}/sessions",
        json={"id": "trip-planning", "title": "Planning a trip"},
        headers=headers,
    )
    assert session.status_code == 201, session.text
    api.post(
        f"/v1/users/{user}/sessions/trip-planning/messages",
        json={"messages": [
            {"role": "user", "content": "I want to visit my sister in Porto next month."},
            {"role": "assistant", "content": "Lovely. Shall I look at trains from Lisbon?"},
        ], "wait": True},
        headers=headers,
    )  # fmt: skip
    policy = {"title": "Travel policy", "content": "Economy for flights under six hours. " * 20}
    api.post(
        f"/v1/users/{user}/documents", json={"documents": [policy], "wait": True}, headers=headers
    )
    fail(db, user, memories[3]["id"], error="provider said 400: input too long")
    page = open_page()
    sign_in(page, ADMIN_KEY)
    for name, path in [
        ("users", "/console/users"),
        ("user", f"/console/users/{user}"),
        ("memories", f"/console/users/{user}/memories"),
        ("memory", f"/console/users/{user}/memories/{memories[0]['id']}"),
        ("documents", f"/console/users/{user}/documents"),
        ("session", f"/console/users/{user}/sessions/trip-planning"),
        ("jobs", "/console/jobs"),
        ("spaces", "/console/spaces"),
        ("keys", "/console/keys"),
        ("audit", "/console/audit"),
        ("status", "/console/status"),
    ]:
        page.goto(path)
        shot(page, name)
    page.goto(f"/console/users/{user}/search")
    page.get_by_label("Query text").fill("where does her family live?")
    page.get_by_role("button", name="Search").click()
    shot(page, "search")
    page.goto("/console/sign-in")
    page.context.clear_cookies()
    page.goto("/console/sign-in")
    shot(page, "sign-in")
