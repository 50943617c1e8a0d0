"""The user as a whole: erasure (right to be forgotten)."""

from __future__ import annotations

from litestar import Controller, delete

from models.store import users
from models.types import Principal
from service.http.auth import USER_GUARDS
from service.http.errors import ERRORS
from service.http.runtime import Runtime


class UserController(Controller):
    path = "/v1/users/{user_id:str}"
    tags = ["users"]
    guards = USER_GUARDS

    @delete("/", status_code=200, responses=ERRORS)
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
