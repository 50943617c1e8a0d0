"""The audit log: admin actions (keys, retries, fills, erasures), who did them, to whom, when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from models.db.rows import fetch_all
from models.types import AuditAction
from models.types import AuditEntry as AuditEntry


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which entries to list: each condition given narrows the list (AND)."""

    action: AuditAction | None = None
    actor: str | None = None
    user_id: str | None = None
    since: datetime | None = None  # at or after
    until: datetime | None = None  # strictly before


# each condition of an AuditFilter, and the cursor's
_CONDITIONS = {
    "action": "action = %(action)s",
    "actor": "actor = %(actor)s",
    "user_id": "target_user = %(user_id)s",
    "since": "at >= %(since)s",
    "until": "at < %(until)s",
    "before": "id < %(before)s",
}


async def record(
    conn: AsyncConnection,
    *,
    actor: str,
    action: AuditAction,
    target: str,
    user_id: str | None = None,
    **details: Any,
) -> None:
    """Log that ``actor`` did ``action`` to ``target``, concerning the end user ``user_id``."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, target_user, details) "
        "VALUES (%s, %s, %s, %s, %s)",
        [actor, action, target, user_id, Jsonb(details)],
    )


async def list_entries(
    conn: AsyncConnection,
    *,
    limit: int,
    before: int | None = None,
    where: AuditFilter | None = None,
) -> list[AuditEntry]:
    """Entries newest first, older than the entry ``before``, that match ``where``."""
    given = msgspec.structs.asdict(where or AuditFilter())
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if before is not None:
        params["before"] = before
    conditions = [sql.SQL(_CONDITIONS[name]) for name in params]
    query = sql.SQL(
        "SELECT id, at, actor, action, target, target_user AS user_id, details FROM audit_log "
        "{where} ORDER BY id DESC LIMIT %(limit)s"
    ).format(
        where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    )
    return await fetch_all(conn, class_row(AuditEntry), query, {**params, "limit": limit})
