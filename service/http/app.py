"""The HTTP edge: ``create_app(settings)`` builds the Litestar application."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.routes import HTTPRoute
from psycopg_pool import AsyncConnectionPool

from models.db import schema
from models.db.pool import CONNECTION_ERRORS, bypasses_row_security, create_pool
from models.db.replica import ReadRouting, WritePositions, written_keep_seconds
from models.embedding.dimensions import verify_spaces
from models.embedding.provider import Embedder, start_embedders
from models.embedding.spaces import SpaceRegistry
from models.errors import InvalidInput
from models.jobs.wakeups import WakeUps
from models.search.languages import verify_text_config
from models.settings import Settings
from service.console.app import console_router
from service.http import keycache, notices, wait
from service.http.auth import (
    provide_owner,
    provide_principal,
    provide_runtime,
    rate_limit_headers,
)
from service.http.errors import EXCEPTION_HANDLERS
from service.http.keycache import KeyCache
from service.http.observe import ObserveRequests, observe_unmatched
from service.http.openapi import KEY_REQUIRED, docs_assets, openapi_config
from service.http.ratelimit import FailedKeys, RateLimiter
from service.http.routes.audit import AuditController
from service.http.routes.context import ContextController
from service.http.routes.documents import BatchController, DocumentController
from service.http.routes.export import ExportController
from service.http.routes.jobs import JobController
from service.http.routes.keys import KeyController
from service.http.routes.memories import MemoryController
from service.http.routes.meta import HealthController
from service.http.routes.metrics import MetricsController
from service.http.routes.search import SearchController
from service.http.routes.sessions import SessionController
from service.http.routes.spaces import SpaceController
from service.http.routes.status import StatusController
from service.http.routes.users import UserController
from service.http.runtime import Runtime
from service.http.wait import Settlements
from service.mcp.endpoint import McpEndpoint

log = logging.getLogger("engram.api")

_BODY_METHODS = {"POST", "PUT", "PATCH"}
# what a browser's script may read of an answer, to pace itself
PACING_HEADERS = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"]


def create_app(settings: Settings, *, embedders: dict[str, Embedder] | None = None) -> Litestar:
    """The API for ``settings``; nothing is opened until the app starts."""
    database_url, redis_url = settings.require_urls()
    spaces = SpaceRegistry.configured(settings)
    mcp = McpEndpoint(max_body_bytes=settings.limits.max_body_bytes)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        loaded = await start_embedders(spaces.all(), local=settings.encoder, given=embedders)
        pool = create_pool(
            database_url,
            min_size=1,
            max_size=settings.database.api_pool_size,
            name="engram-api",
            timeout=settings.database.timeout_seconds,
            prepare_threshold=settings.database.prepare_threshold,
            statement_timeout=settings.database.statement_timeout_seconds,
            text_config=settings.search.text_search_config,
        )
        await pool.open()
        languages = None  # read when first needed if the database cannot be reached now
        try:
            # a space whose dims disagree anywhere stops the start here, before any write;
            # so does a text-search configuration the database does not have
            await verify_spaces(pool, spaces.all(), loaded)
            languages = await verify_text_config(pool, settings.search.text_search_config)
        except CONNECTION_ERRORS as exc:
            # the worker checks too, at its boot; /readyz reports the database meanwhile
            log.warning("database unreachable (%s): spaces not checked against it", exc)
        except BaseException:
            await pool.close()
            for embedder in loaded.values():
                await embedder.close()
            raise
        await _warn_if_row_security_is_bypassed(pool)
        routing = _read_routing(settings, pool, redis_url)
        await routing.start()
        wakeups = WakeUps(redis_url)
        limiter = RateLimiter(redis_url, per_minute=settings.server.rate_limit_per_minute)
        failed_keys = FailedKeys(
            redis_url,
            per_minute=settings.server.failed_keys_per_minute,
            trusted_proxies=settings.server.trusted_proxies,
        )
        key_cache = KeyCache(settings.server.key_cache_seconds)
        settlements = Settlements()
        listener = asyncio.create_task(
            notices.listen(
                settings.database.listen_url or database_url,
                {keycache.CHANNEL: key_cache, wait.CHANNEL: settlements},
            )
        )
        app.state.runtime = Runtime(
            settings=settings,
            pool=pool,
            spaces=spaces,
            embedders=loaded,
            wakeups=wakeups,
            limiter=limiter,
            failed_keys=failed_keys,
            keys=key_cache,
            settlements=settlements,
            schema_head=schema.head_revision(),
            routing=routing,
            languages=languages,
        )
        # What start-up made (the model, the libraries) lives as long as the process: out of
        # the collector's sight, a full collection no longer walks it with the loop waiting.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await routing.close()
            await pool.close()
            wakeups.close()
            await limiter.close()
            await failed_keys.close()
            for embedder in loaded.values():
                await embedder.close()

    return Litestar(
        route_handlers=[
            HealthController,
            # every route here takes a key, and the OpenAPI document says so
            Router(
                path="/",
                security=KEY_REQUIRED,
                route_handlers=[
                    MetricsController,
                    StatusController,
                    KeyController,
                    MemoryController,
                    DocumentController,
                    BatchController,
                    SessionController,
                    ContextController,
                    SearchController,
                    SpaceController,
                    UserController,
                    ExportController,
                    JobController,
                    AuditController,
                ],
            ),
            mcp.handler,  # the tools for agents (service/mcp), behind the same keys
            console_router(settings),  # the web console at /console (service/console)
            docs_assets(),
        ],
        lifespan=[lifespan, mcp.lifespan],
        dependencies={
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
            "owner": Provide(provide_owner, sync_to_thread=False),
        },
        middleware=[ObserveRequests()],
        # what is left of a key's rate limit, on every answer to a key (none if no limit)
        before_send=[observe_unmatched]
        + ([rate_limit_headers] if settings.server.rate_limit_per_minute else []),
        logging_config=None,  # `engram` configures logging (models/observe/logs.py)
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        before_request=RequestChecks(),
        request_max_body_size=settings.limits.max_body_bytes,
        cors_config=CORSConfig(
            allow_origins=list(settings.server.cors_origins), expose_headers=PACING_HEADERS
        )
        if settings.server.cors_origins
        else None,
        openapi_config=openapi_config(),
        debug=False,
    )


def _read_routing(settings: Settings, primary: AsyncConnectionPool, redis_url: str) -> ReadRouting:
    """Reads on the primary alone, or on ``ENGRAM_READ_DATABASE_URL`` when it is set."""
    database = settings.database
    if database.read_url is None:
        return ReadRouting(primary)
    replica = create_pool(
        database.read_url,
        min_size=1,
        max_size=database.api_pool_size,
        name="engram-api-replica",
        # a replica that does not answer soon is left for the primary
        timeout=min(database.timeout_seconds, 1.0),
        prepare_threshold=database.prepare_threshold,
        statement_timeout=database.statement_timeout_seconds,
        text_config=settings.search.text_search_config,
    )
    positions = WritePositions(
        redis_url, keep_seconds=written_keep_seconds(database.read_max_lag_seconds)
    )
    return ReadRouting(
        primary,
        replica,
        positions,
        max_wait=database.read_max_wait_seconds,
        max_lag=database.read_max_lag_seconds,
    )


async def _warn_if_row_security_is_bypassed(pool: AsyncConnectionPool) -> None:
    try:
        async with pool.connection() as conn:
            bypassed = await bypasses_row_security(conn)
    except Exception:
        return  # the database is not up yet: /readyz reports it
    if bypassed:
        log.warning(
            "the database role escapes row-level security (superuser, BYPASSRLS or owner): "
            "connect ENGRAM_DATABASE_URL as engram_app (see docs/security.md)"
        )


class RequestChecks:
    """The ``before_request`` hook: what every request must be, checked before its body is
    read. Its query parameters hold no NUL (a 422 naming the parameter) and are all ones
    the route declares (a 422 naming the others); its body is JSON, or what the route's
    ``opt["body"]`` names (else a 415)."""

    def __init__(self) -> None:
        self._declared: dict[BaseRouteHandler, frozenset[str] | None] | None = None

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        self._check_query(request)
        _check_body(request)

    def _check_query(self, request: Request[Any, Any, Any]) -> None:
        if self._declared is None:  # every route is registered by the first request
            self._declared = declared_query(request.app)
        declared = self._declared.get(request.route_handler)
        unknown = []
        for name, value in request.query_params.multi_items():
            if "\x00" in name or "\x00" in value:
                raise InvalidInput(f"query parameter {name!r} must not contain NUL characters")
            if declared is not None and name not in declared:
                unknown.append(name)
        if unknown:
            raise InvalidInput(_unknown_query(unknown, declared or frozenset()))


def declared_query(app: Litestar) -> dict[BaseRouteHandler, frozenset[str] | None]:
    """The query parameter names each route handler takes, read from the model Litestar
    parses its parameters with (dependencies' included). Routes left out of the OpenAPI
    document (the docs UI, CORS preflights) are not checked: None."""
    declared: dict[BaseRouteHandler, frozenset[str] | None] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler, model in route.route_handler_map.values():
            if not handler.resolve_include_in_schema():
                declared[handler] = None
                continue
            names = frozenset(p.field_alias for p in model.expected_query_params)
            declared[handler] = names | (declared.get(handler) or frozenset())
    return declared


def _unknown_query(unknown: list[str], declared: frozenset[str]) -> str:
    names = sorted(set(unknown))  # the order a query string was parsed in is not kept
    noun = "parameter" if len(names) == 1 else "parameters"
    takes = ", ".join(sorted(declared)) if declared else "no query parameters"
    return f"unknown query {noun} {', '.join(map(repr, names))}; the route takes {takes}"


def _check_body(request: Request[Any, Any, Any]) -> None:
    if request.method not in _BODY_METHODS:
        return
    has_body = (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )
    expected = request.route_handler.opt.get("body", "application/json")
    media_type, _ = request.content_type
    if has_body and media_type != expected:
        raise HTTPException(status_code=415, detail=f"send the body as {expected}")
