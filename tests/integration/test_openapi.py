"""The OpenAPI document and its docs UI: the key is declared as HTTP bearer auth on every
route that takes one, and the docs UI loads its scripts, styles and icon from the API itself,
without a key, so it works offline."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from litestar.routes import HTTPRoute

SRC_OR_HREF = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""")
OPEN = {("GET", "/healthz"), ("GET", "/readyz")}
MEDIA = {"js": "javascript", "css": "text/css", "png": "image/png"}


def test_every_route_but_the_probes_declares_bearer_auth(client):
    document = client.get("/schema/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    security = {
        (method.upper(), path): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert {op for op, required in security.items() if required is None} == OPEN
    assert {str(required) for op, required in security.items() if op not in OPEN} == {
        str([{"bearer": []}])
    }
    assert security[("GET", "/metrics")] == [{"bearer": []}]


def test_a_route_declares_bearer_auth_exactly_when_a_guard_checks_a_key(client):
    documented = [
        handler
        for route in client.app.routes
        if isinstance(route, HTTPRoute)
        for handler, _ in route.route_handler_map.values()
        if handler.resolve_include_in_schema()
    ]
    assert documented
    for handler in documented:
        assert bool(handler.resolve_guards()) == bool(handler.resolve_security()), handler


def test_the_probes_answer_without_a_key_and_the_rest_asks_for_one(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/spaces").status_code == 401


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
def test_the_docs_ui_loads_everything_from_the_api_itself(api_url, page):
    answer = httpx.get(api_url + page)  # no key: the docs are public, as the document is
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    links = SRC_OR_HREF.findall(answer.text)
    assert {link.rsplit(".", 1)[-1] for link in links} == set(MEDIA), links
    for link in links:
        asset = same_origin(api_url, urljoin(str(answer.url), link))
        kind = asset.headers["content-type"]
        assert asset.content and MEDIA[link.rsplit(".", 1)[-1]] in kind, (link, kind)
        if link.endswith(".css"):  # fonts and images a style sheet pulls in
            for inner in CSS_URL.findall(asset.text):
                if not inner.startswith("data:"):
                    same_origin(api_url, urljoin(str(asset.url), inner))


def same_origin(api_url: str, url: str) -> httpx.Response:
    """``url``, checked to be the API's own and to answer 200 without a key."""
    assert urlsplit(url)[:2] == urlsplit(api_url)[:2], f"{url} is not served by the API"
    answer = httpx.get(url)
    assert answer.status_code == 200, (url, answer.status_code)
    assert "x-request-id" in answer.headers  # the request observer saw it like any route
    return answer


@pytest.mark.parametrize("page", ["redoc", "rapidoc", "elements", "openapi.yaml"])
def test_no_other_docs_ui_is_served(api_url, page):
    """Litestar's other UIs load their scripts from CDNs: none of them is served."""
    assert httpx.get(f"{api_url}/schema/{page}").status_code == 404


def test_the_assets_pass_the_checks_every_request_passes(api_url):
    asset = f"{api_url}/schema/assets/swagger-ui.css"
    refused = httpx.get(asset, params={"v": "a\x00b"})
    assert refused.status_code == 422, refused.text
    body: dict[str, Any] = refused.json()
    assert "NUL" in body["error"]["message"]
    assert httpx.get(f"{api_url}/schema/assets/../../../etc/passwd").status_code == 404
