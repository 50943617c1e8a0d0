"""API keys (admin only): create, list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import Parameter

from models.errors import NotFound
from models.store import keys
from models.types import ApiKey, Principal
from models.validation import check_user_id
from service.http.auth import ADMIN_GUARDS
from service.http.errors import ERRORS
from service.http.runtime import Runtime


class KeyIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: str | None = None


class CreatedKey(msgspec.Struct, kw_only=True):
    id: UUID
    key: str
    user_id: str | None
    created_at: datetime


class KeyList(msgspec.Struct, kw_only=True):
    keys: list[ApiKey]
    next_cursor: str | None = None


class KeyController(Controller):
    path = "/v1/keys"
    tags = ["keys"]
    guards = ADMIN_GUARDS

    @post("/", status_code=201, responses=ERRORS)
    async def create_key(self, principal: Principal, data: KeyIn, runtime: Runtime) -> CreatedKey:
        """A key for one user (``user_id``) or, without it, an admin key. Shown this once."""
        user_id = check_user_id(data.user_id) if data.user_id is not None else None
        key, token = await runtime.across_users(
            keys.create_key, user_id=user_id, actor=principal.key_id
        )
        return CreatedKey(id=key.id, key=token, user_id=key.user_id, created_at=key.created_at)

    @get("/", responses=ERRORS)
    async def list_keys(
        self,
        principal: Principal,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
    ) -> KeyList:
        """Keys, newest first, without secrets; pass ``next_cursor`` back as ``cursor``."""
        rows, next_cursor = await runtime.across_users(keys.list_keys, limit=limit, cursor=cursor)
        return KeyList(keys=rows, next_cursor=next_cursor)

    @delete("/{key_id:uuid}", status_code=204, responses=ERRORS)
    async def revoke_key(self, principal: Principal, key_id: UUID, runtime: Runtime) -> None:
        """Revoke a key; it stops working at once."""
        if not await runtime.across_users(keys.revoke_key, key_id, actor=principal.key_id):
            raise NotFound(f"key {key_id} not found")
        # other processes forget it when the notice of its revocation arrives
        runtime.keys.forget_all()
