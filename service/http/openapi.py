"""The OpenAPI document and its docs UI.

The document declares the key as HTTP bearer auth, on the routes that take one. The docs UI
is Swagger UI, whose files come from a Python package (``swagger-ui-bundle-v2``) and are
served by the API itself: the page loads nothing from another host, so it works offline.
"""

from __future__ import annotations

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/schema"
ASSETS_PATH = f"{DOCS_PATH}/assets"
_ICON = f"{ASSETS_PATH}/favicon-32x32.png"
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
    """The document at ``/schema/openapi.json``; Swagger UI at ``/schema`` and
    ``/schema/swagger``, with its scripts, styles and icon from ``/schema/assets``."""
    return OpenAPIConfig(
        title="Engram",
        version="1",
        path=DOCS_PATH,
        components=Components(security_schemes={BEARER: _KEY}),
        render_plugins=[
            SwaggerRenderPlugin(
                path=["/", "/swagger"],
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{_ICON}'>",
            ),
            JsonRenderPlugin(),
        ],
    )


def docs_assets() -> Router:
    """Swagger UI's files, as its package ships them: no key needed, left out of the document."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[swagger_ui_path],
        name="docs-assets",
        cache_control=CacheControlHeader(max_age=3600),
    )
