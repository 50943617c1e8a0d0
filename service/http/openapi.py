"""The OpenAPI document: it declares the key as HTTP bearer auth, on the routes that take one."""

from __future__ import annotations

from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

DOCS_PATH = "/schema"
BEARER = "bearer"
# The requirement of every route that takes a key (Litestar adds a layer's to its routes).
KEY_REQUIRED: list[SecurityRequirement] = [{BEARER: []}]

_KEY = SecurityScheme(
    type="http",
    scheme="bearer",
    description=(
        "An Engram API key: an admin key, or a key that acts on one user. "
        "`/metrics` also takes the metrics token (ENGRAM_METRICS_TOKEN)."
    ),
)


def openapi_config() -> OpenAPIConfig:
    """The document at ``/schema/openapi.json``, with Litestar's docs UIs under ``/schema``."""
    return OpenAPIConfig(
        title="Engram",
        version="1",
        path=DOCS_PATH,
        components=Components(security_schemes={BEARER: _KEY}),
    )
