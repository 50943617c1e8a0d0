"""The audit log: admin actions (keys, retries, erasures), who did them and when."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all
from models.types import AuditEntry as AuditEntry


async def record(
    conn: AsyncConnection, *, actor: str, action: str, target: str, **details: Any
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, details) VALUES (%s, %s, %s, %s)",
        [actor, action, target, Jsonb(details)],
    )


async def list_entries(
    conn: AsyncConnection, *, limit: int, before: int | None = None
) -> list[AuditEntry]:
    """Entries newest first, older than the entry ``before``."""
    return await fetch_all(
        conn,
        class_row(AuditEntry),
        "SELECT id, at, actor, action, target, details FROM audit_log "
        "WHERE %(before)s::bigint IS NULL OR id < %(before)s ORDER BY id DESC LIMIT %(limit)s",
        {"before": before, "limit": limit},
    )
