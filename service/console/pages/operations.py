"""The service as an operator sees it (admin keys): failed jobs and retries, spaces and
their fills, keys, the audit log and the work at a glance. Spaces are shown to every key,
with its own counts."""

from __future__ import annotations

from typing import Annotated, Any, cast, get_args
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from models.errors import InvalidInput, NotFound
from models.jobs import fills, status
from models.jobs import outbox as jobs
from models.observe import audit
from models.observe.audit import AuditFilter
from models.store import keys
from models.store.cursors import encode_cursor
from models.types import AuditAction
from models.validation import check_user_id
from service.console.render import FORM, chosen, moment, page
from service.console.session import PATH, SIGNED_IN_GUARDS, admin_page, caller
from service.http.observe import current_request_id
from service.http.routes.audit import actor_id, aware_time
from service.http.routes.jobs import decode_job_cursor
from service.http.routes.spaces import describe_spaces, named_space
from service.http.runtime import Runtime

PAGE_SIZE = 50
Cursor = Annotated[str | None, Parameter(max_length=512)]
# how often a page of figures reloads itself, in seconds (none: it does not)
Reload = Annotated[int | None, Parameter(ge=2, le=3600)]
AUDIT_ACTIONS: tuple[str, ...] = get_args(AuditAction)


class OperationPages(Controller):
    path = PATH
    guards = SIGNED_IN_GUARDS

    @get("/jobs", guards=[admin_page])
    async def failed_jobs(
        self, request: Request[Any, Any, Any], runtime: Runtime, cursor: Cursor = None
    ) -> Response[str]:
        """Items whose embedding failed for good, with their last error."""
        after = decode_job_cursor(cursor) if cursor else None
        found = await runtime.across_users(jobs.list_failed, limit=PAGE_SIZE + 1, after=after)
        next_cursor = None
        if len(found) > PAGE_SIZE:
            last = found[PAGE_SIZE - 1]
            next_cursor = encode_cursor(last.space, last.user_id, str(last.id))
        return page(
            request, "jobs.html", jobs=found[:PAGE_SIZE], next_cursor=next_cursor, cursor=cursor,
            retried=request.query_params.get("retried"),
        )  # fmt: skip

    @post("/jobs/{item_id:uuid}/retry", guards=[admin_page], opt=FORM)
    async def retry(
        self, request: Request[Any, Any, Any], item_id: UUID, runtime: Runtime
    ) -> Response[Any]:
        """Embed a failed item again, with a fresh count of attempts."""
        retried = await runtime.across_users(
            jobs.retry_failed,
            item_id,
            actor=caller(request).key_id,
            request_id=current_request_id(),
            external=[space.name for space in runtime.spaces.external()],
        )
        if not retried:
            raise NotFound(f"no failed job {item_id}")
        await runtime.wakeups.embed(retried)
        return Redirect(f"{PATH}/jobs?retried={item_id}", status_code=303)

    @get("/spaces")
    async def spaces(
        self, request: Request[Any, Any, Any], runtime: Runtime, refresh: Reload = None
    ) -> Response[str]:
        """Each space with its items by state and how far its fill has got (``refresh``:
        the page reloads itself that often, in seconds)."""
        described = await describe_spaces(runtime, caller(request), runtime.spaces.all())
        return page(
            request,
            "spaces.html",
            spaces=described,
            filling=request.query_params.get("filling"),
            refresh=refresh,
        )

    @post("/spaces/{name:str}/backfill", guards=[admin_page], opt=FORM)
    async def backfill(
        self, request: Request[Any, Any, Any], name: str, runtime: Runtime
    ) -> Response[Any]:
        """Start embedding every existing item into the space, in the background."""
        space = named_space(runtime, name)
        if space.external:
            raise InvalidInput(f"space {name} is external: its clients embed, not the server")
        await runtime.across_users(fills.request_fill, space.name, actor=caller(request).key_id)
        await runtime.wakeups.fill(space.name)
        return Redirect(f"{PATH}/spaces?filling={space.name}", status_code=303)

    @get("/keys", guards=[admin_page])
    async def keys(
        self, request: Request[Any, Any, Any], runtime: Runtime, cursor: Cursor = None
    ) -> Response[str]:
        """Keys, newest first, without their secrets."""
        return await _keys_page(request, runtime, cursor=cursor)

    @post("/keys", guards=[admin_page], opt=FORM)
    async def create_key(self, request: Request[Any, Any, Any], runtime: Runtime) -> Response[str]:
        """A key for one user, or an admin key: its secret is shown on this page only."""
        form = await request.form()
        user_id = str(form.get("user_id", "")).strip()
        scoped = check_user_id(user_id) if user_id else None
        key, token = await runtime.across_users(
            keys.create_key, user_id=scoped, actor=caller(request).key_id
        )
        return await _keys_page(request, runtime, created=(key, token), status=201)

    @post("/keys/{key_id:uuid}/revoke", guards=[admin_page], opt=FORM)
    async def revoke_key(
        self, request: Request[Any, Any, Any], key_id: UUID, runtime: Runtime
    ) -> Response[Any]:
        """Revoke a key; it stops working at once, in the console too."""
        if not await runtime.across_users(keys.revoke_key, key_id, actor=caller(request).key_id):
            raise NotFound(f"key {key_id} not found")
        runtime.keys.forget_all()
        return Redirect(f"{PATH}/keys?revoked={key_id}", status_code=303)

    @get("/audit", guards=[admin_page])
    async def audit_log(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        cursor: Annotated[int | None, Parameter(ge=1, le=2**63 - 1)] = None,
        action: Annotated[str | None, Parameter(max_length=32)] = None,
        actor: Annotated[str | None, Parameter(max_length=64)] = None,
        user_id: Annotated[str | None, Parameter(max_length=128)] = None,
        since: Annotated[str | None, Parameter(max_length=64)] = None,
        until: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> Response[str]:
        """Admin actions, newest first, narrowed by the filters together."""
        after, before = moment(since, "since"), moment(until, "until")
        where = AuditFilter(
            action=cast(AuditAction | None, chosen(action, AUDIT_ACTIONS, "action")),
            actor=actor_id(actor) if actor else None,
            user_id=check_user_id(user_id) if user_id else None,
            since=aware_time("since", after) if after else None,
            until=aware_time("until", before) if before else None,
        )
        found = await runtime.across_users(
            audit.list_entries, limit=PAGE_SIZE + 1, before=cursor, where=where
        )
        next_cursor = found[PAGE_SIZE - 1].id if len(found) > PAGE_SIZE else None
        filters = {
            "action": action or "", "actor": actor or "", "user_id": user_id or "",
            "since": since or "", "until": until or "",
        }  # fmt: skip
        return page(
            request, "audit.html", entries=found[:PAGE_SIZE], next_cursor=next_cursor,
            filters=filters, filtered=any(filters.values()), actions=AUDIT_ACTIONS,
            cursor=cursor,
        )  # fmt: skip

    @get("/status", guards=[admin_page])
    async def status(
        self, request: Request[Any, Any, Any], runtime: Runtime, refresh: Reload = None
    ) -> Response[str]:
        """Jobs by space and state, throughput, the broker's queue and the common errors."""
        found = {s.space: s for s in await runtime.across_users(status.space_status)}
        names = runtime.spaces.names()
        spaces = [found.get(name) or status.SpaceStatus(space=name) for name in names]
        spaces += [s for name, s in sorted(found.items()) if name not in names]
        return page(
            request, "status.html", spaces=spaces, queue=await runtime.wakeups.queue_depth(),
            failures=await runtime.across_users(status.failure_reasons, limit=10),
            refresh=refresh,
        )  # fmt: skip


async def _keys_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    *,
    cursor: str | None = None,
    created: tuple[Any, str] | None = None,
    status: int = 200,
) -> Response[str]:
    rows, next_cursor = await runtime.across_users(keys.list_keys, limit=PAGE_SIZE, cursor=cursor)
    return page(
        request, "keys.html", status=status, keys=rows, next_cursor=next_cursor, cursor=cursor,
        created=created, revoked=request.query_params.get("revoked"),
    )  # fmt: skip
