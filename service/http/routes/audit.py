"""The audit log (admin only): admin actions, newest first."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from models.observe import audit
from models.observe.audit import AuditEntry
from models.types import Principal
from service.http.auth import ADMIN_GUARDS
from service.http.errors import ERRORS
from service.http.runtime import Runtime


class AuditPage(msgspec.Struct, kw_only=True):
    entries: list[AuditEntry]
    next_cursor: int | None = None


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]
    guards = ADMIN_GUARDS

    @get("/", responses=ERRORS)
    async def audit_log(
        self,
        principal: Principal,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: Annotated[int | None, Parameter(ge=1, le=2**63 - 1)] = None,
    ) -> AuditPage:
        """Who did what, when: key creation and revocation, job retries, erasures."""
        found = await runtime.across_users(audit.list_entries, limit=limit + 1, before=cursor)
        if len(found) <= limit:
            return AuditPage(entries=found)
        return AuditPage(entries=found[:limit], next_cursor=found[limit - 1].id)
