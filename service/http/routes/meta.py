"""Health and readiness."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec

from models.db import schema
from service.http.runtime import Runtime


class Readiness(msgspec.Struct, kw_only=True):
    ready: bool
    checks: dict[str, str]


class HealthController(Controller):
    tags = ["health"]

    @get("/healthz")
    async def healthz(self) -> dict[str, str]:
        """Liveness: the process serves."""
        return {"status": "ok"}

    @get(
        "/readyz",
        responses={
            503: ResponseSpec(
                Readiness, description="not ready: see checks", generate_examples=False
            )
        },
    )
    async def readyz(self, runtime: Runtime) -> Response[Readiness]:
        """Ready when Postgres answers, the schema is at head and the broker answers."""
        checks = {"database": "ok", "schema": "ok", "broker": "ok"}
        head = runtime.schema_head
        try:
            async with runtime.pool.connection(timeout=2) as conn:
                current = await schema.current_revision(conn)
            if current != head:
                checks["schema"] = f"at {current or 'nothing'}, want {head}: run `engram migrate`"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
            checks["schema"] = "unknown"
        if not await runtime.wakeups.ping():
            checks["broker"] = "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return Response(Readiness(ready=ready, checks=checks), status_code=200 if ready else 503)
