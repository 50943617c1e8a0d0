"""The audit log (admin only): admin actions, newest first, filtered."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from models.errors import InvalidInput
from models.observe import audit
from models.observe.audit import AuditEntry, AuditFilter
from models.store.keys import BOOTSTRAP_KEY_ID
from models.types import AuditAction, Principal
from models.validation import check_user_id
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
        action: AuditAction | None = None,
        actor: Annotated[str | None, Parameter(max_length=64)] = None,
        user_id: Annotated[str | None, Parameter(max_length=128)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditPage:
        """Who did what to whom, when: key creation and revocation, job retries, space fills
        and drops, erasures. Filters narrow the list together: ``action``, ``actor`` (a key
        id), ``user_id`` (the end user it concerned), and ``since`` (inclusive) and
        ``until`` (exclusive) times."""
        where = AuditFilter(
            action=action,
            actor=None if actor is None else actor_id(actor),
            user_id=None if user_id is None else check_user_id(user_id),
            since=None if since is None else aware_time("since", since),
            until=None if until is None else aware_time("until", until),
        )
        found = await runtime.across_users(
            audit.list_entries, limit=limit + 1, before=cursor, where=where
        )
        if len(found) <= limit:
            return AuditPage(entries=found)
        return AuditPage(entries=found[:limit], next_cursor=found[limit - 1].id)


def actor_id(actor: str) -> str:
    """A key id as the log holds it: the bootstrap key's name, or a UUID in lower case."""
    if actor == BOOTSTRAP_KEY_ID:
        return actor
    try:
        return str(UUID(actor))
    except ValueError:
        raise InvalidInput(f"actor must be a key id (a UUID) or {BOOTSTRAP_KEY_ID!r}") from None


def aware_time(name: str, when: datetime) -> datetime:
    """A time with its offset: one without would be read in the database's time zone."""
    if when.tzinfo is None:
        raise InvalidInput(f"{name} must be an RFC 3339 time with an offset: 2026-01-01T00:00:00Z")
    return when
