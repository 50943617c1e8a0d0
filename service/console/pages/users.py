"""The users (an admin's list, found by the start of their id) and one user's overview."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import Parameter
from litestar.response import Redirect

from models.store import users
from models.validation import check_user_id
from service.console.render import page
from service.console.session import PATH, SIGNED_IN_GUARDS, admin_page
from service.http.auth import acts_on_path_user
from service.http.routes.users import Prefix, user_page
from service.http.runtime import Runtime

PAGE_SIZE = 50
Cursor = Annotated[str | None, Parameter(max_length=512)]


class UserPages(Controller):
    path = f"{PATH}/users"
    guards = SIGNED_IN_GUARDS

    @get("/", guards=[admin_page])
    async def users(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        prefix: Prefix = "",
        cursor: Cursor = None,
        open_id: Annotated[str | None, Parameter(query="open", max_length=128)] = None,
    ) -> Response[Any]:
        """Every user with their counts, in the order of their ids; ``open`` goes to one."""
        if open_id:
            return Redirect(f"{PATH}/users/{check_user_id(open_id.strip())}", status_code=303)
        found = await user_page(runtime, limit=PAGE_SIZE, cursor=cursor, prefix=prefix)
        return page(
            request, "users.html", users=found.users, next_cursor=found.next_cursor, prefix=prefix,
            cursor=cursor,
        )  # fmt: skip

    @get("/{user_id:str}", guards=[acts_on_path_user])
    async def user(
        self, request: Request[Any, Any, Any], user_id: str, runtime: Runtime
    ) -> Response[str]:
        """What the user has, with the ways into it."""
        found = await runtime.as_user(user_id, users.list_users, limit=1, prefix=user_id)
        summary = next(
            (row for row in found if row.user_id == user_id),
            users.UserSummary(user_id=user_id, memories=0, documents=0, sessions=0, keys=0),
        )
        return page(request, "user.html", user_id=user_id, summary=summary)
