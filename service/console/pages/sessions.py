"""A user's sessions, and a session's messages in order."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from models.store import sessions
from models.validation import check_session_id
from service.console.render import page
from service.console.session import PATH, USER_PAGE_GUARDS
from service.http.runtime import Runtime

PAGE_SIZE = 50
MESSAGES_PAGE = 100


class SessionPages(Controller):
    path = f"{PATH}/users/{{user_id:str}}/sessions"
    guards = USER_PAGE_GUARDS

    @get("/")
    async def sessions(
        self,
        request: Request[Any, Any, Any],
        user_id: str,
        runtime: Runtime,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
    ) -> Response[str]:
        """A page of sessions, newest first, with their numbers of messages."""
        rows, next_cursor = await runtime.as_user(
            user_id, sessions.list_sessions, user_id, limit=PAGE_SIZE, cursor=cursor
        )
        return page(
            request, "sessions.html", user_id=user_id, sessions=rows, next_cursor=next_cursor,
            cursor=cursor,
        )  # fmt: skip

    @get("/{session_id:str}")
    async def session(
        self,
        request: Request[Any, Any, Any],
        user_id: str,
        session_id: str,
        runtime: Runtime,
        after: Annotated[int, Parameter(ge=0, le=2**62)] = 0,
    ) -> Response[str]:
        """A session and its messages in the order they were said, from after ``after``."""
        session_id = check_session_id(session_id) or ""
        session = await runtime.as_user(user_id, sessions.get_session, user_id, session_id)
        messages = await runtime.as_user(
            user_id, sessions.list_messages, user_id, session_id, limit=MESSAGES_PAGE, after=after
        )
        next_after = messages[-1].seq if len(messages) == MESSAGES_PAGE else None
        return page(
            request, "session.html", user_id=user_id, session=session, messages=messages,
            next_after=next_after, after=after,
        )  # fmt: skip
