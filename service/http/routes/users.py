"""Users: the admin's list of them, with their counts, and erasure (right to be forgotten)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get
from litestar.params import Parameter

from models.store import users
from models.store.cursors import decode_cursor, encode_cursor
from models.types import Principal
from models.validation import check_user_id
from service.http.auth import ADMIN_GUARDS, USER_GUARDS
from service.http.errors import ERRORS
from service.http.runtime import Runtime

# what a user id may start with: the characters of a user id (models/validation.py)
Prefix = Annotated[str, Parameter(max_length=128, pattern=r"^[A-Za-z0-9._:@-]*$")]


class UserList(msgspec.Struct, kw_only=True):
    users: list[users.UserSummary]
    next_cursor: str | None = None


async def user_page(
    runtime: Runtime, *, limit: int, cursor: str | None, prefix: str = ""
) -> UserList:
    """A page of users in the order of their ids, as ``GET /v1/users`` answers it."""
    after = check_user_id(decode_cursor(cursor, parts=1)[0]) if cursor else None
    found = await runtime.across_users(
        users.list_users, limit=limit + 1, after=after, prefix=prefix
    )
    if len(found) <= limit:
        return UserList(users=found)
    return UserList(users=found[:limit], next_cursor=encode_cursor(found[limit - 1].user_id))


class UserController(Controller):
    path = "/v1/users"
    tags = ["users"]

    @get("/", guards=ADMIN_GUARDS, responses=ERRORS)
    async def list_users(
        self,
        principal: Principal,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
        prefix: Prefix = "",
    ) -> UserList:
        """Users (admin): every user id that has memories, documents, sessions or a key, in
        order, with their counts; ``prefix`` finds users by the start of their id. Pass
        ``next_cursor`` back as ``cursor`` for more."""
        return await user_page(runtime, limit=limit, cursor=cursor, prefix=prefix)

    @delete("/{user_id:str}", guards=USER_GUARDS, status_code=200, responses=ERRORS)
    async def erase_user(self, owner: str, principal: Principal, runtime: Runtime) -> users.Erased:
        """Erase everything of this user, vectors included; answers what was deleted.

        Audited. Keys scoped to the user stay valid: they belong to the client app.
        """
        return await runtime.as_user(
            owner,
            users.erase_user,
            owner,
            spaces=runtime.spaces.names(),
            actor=principal.key_id,
        )
