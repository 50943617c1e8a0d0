"""The OpenAPI document: the key is declared as HTTP bearer auth on every route that takes
one, and on no other."""

from __future__ import annotations

from litestar.routes import HTTPRoute

OPEN = {("GET", "/healthz"), ("GET", "/readyz")}


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
