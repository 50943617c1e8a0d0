"""API keys: generation, digests, and their repository.

A key reads ``egm_<lookup>_<secret>``: the fixed prefix lets secret scanners spot it, the
lookup part finds the row through a unique index, and only a SHA-256 digest of the
32-byte random secret is stored (a fast hash is enough for secrets of that entropy).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import uuid
from pathlib import Path
from typing import NamedTuple

from psycopg import AsyncConnection
from psycopg.rows import class_row

from models.db.rows import fetch_all, fetch_one
from models.observe import audit
from models.store.cursors import decode_newest_first, newest_first_page
from models.types import ApiKey, Principal

KEY_PREFIX = "egm"
_KEY_RE = re.compile(r"^egm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
BOOTSTRAP_KEY_ID = "bootstrap"


def new_token() -> str:
    """A fresh key: 8 random bytes of lookup and 32 of secret."""
    return f"{KEY_PREFIX}_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(lookup, secret) of a well-formed token, else None."""
    match = _KEY_RE.match(token)
    return (match.group(1), match.group(2)) if match else None


def matches_bootstrap(token: str, admin_key: str | None) -> bool:
    """Constant-time comparison with the configured bootstrap admin key."""
    return bool(admin_key) and same_secret(token, admin_key or "")


def same_secret(given: str, expected: str) -> bool:
    """Whether two secrets are equal, compared in constant time (of their digests)."""
    return hmac.compare_digest(digest(given), digest(expected))


def resolve_admin_key(configured: str | None, key_file: Path) -> str:
    """The bootstrap admin key: configured, else read from or generated into ``key_file``."""
    if configured:
        return configured
    if key_file.exists():
        return key_file.read_text().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


_COLUMNS = "id, user_id, 'egm_' || lookup AS prefix, created_at, revoked_at, last_used_at"


async def create_key(
    conn: AsyncConnection, *, user_id: str | None, actor: str
) -> tuple[ApiKey, str]:
    """Store a new key for ``user_id`` (None: admin); return it with its token, shown once."""
    token = new_token()
    lookup, secret = _KEY_RE.match(token).groups()  # type: ignore[union-attr]
    async with conn.transaction():
        key = await fetch_one(
            conn,
            class_row(ApiKey),
            f"INSERT INTO api_keys (id, lookup, digest, user_id) "
            f"VALUES (%(id)s, %(lookup)s, %(digest)s, %(user_id)s) RETURNING {_COLUMNS}",
            {"id": uuid.uuid4(), "lookup": lookup, "digest": digest(secret), "user_id": user_id},
        )
        assert key is not None
        await audit.record(
            conn, actor=actor, action="key.create", target=str(key.id), user_id=user_id
        )
    return key, token


async def list_keys(
    conn: AsyncConnection, *, limit: int, cursor: str | None = None
) -> tuple[list[ApiKey], str | None]:
    """A page of keys, newest first, and the cursor of the next page (None at the end)."""
    after = decode_newest_first(cursor)
    rows = await fetch_all(
        conn,
        class_row(ApiKey),
        f"SELECT {_COLUMNS} FROM api_keys WHERE %(after_at)s::timestamptz IS NULL "
        "OR (created_at, id) < (%(after_at)s, %(after_id)s) "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        {
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit + 1,
        },
    )
    return newest_first_page(rows, limit)


async def revoke_key(conn: AsyncConnection, key_id: uuid.UUID, *, actor: str) -> bool:
    """Revoke a key at once; False if there is no such key."""
    async with conn.transaction():
        revoked = await fetch_one(
            conn,
            class_row(_Revoked),
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE id = %s RETURNING user_id",
            [key_id],
        )
        if revoked is None:
            return False
        await audit.record(
            conn, actor=actor, action="key.revoke", target=str(key_id), user_id=revoked.user_id
        )
    return True


async def authenticate(conn: AsyncConnection, token: str) -> Principal | None:
    """The principal of a valid, unrevoked key; None for anything else."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    lookup, secret = parsed
    key = await fetch_one(
        conn,
        class_row(_Stored),
        "SELECT id, user_id, digest FROM api_keys WHERE lookup = %s AND revoked_at IS NULL",
        [lookup],
    )
    if key is None or not hmac.compare_digest(key.digest, digest(secret)):
        return None
    # Touch last_used_at at most once a minute: no write per request.
    await conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = %s "
        "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        [key.id],
    )
    return Principal(key_id=str(key.id), user_id=key.user_id)


class _Stored(NamedTuple):
    id: uuid.UUID
    user_id: str | None
    digest: bytes


class _Revoked(NamedTuple):
    user_id: str | None
