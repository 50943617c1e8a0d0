"""Embedding jobs (admin only): the dead letters, and sending one back for another try."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter

from models.errors import InvalidInput, NotFound
from models.jobs import messages
from models.jobs import outbox as jobs
from models.store.cursors import decode_cursor, encode_cursor
from models.types import FailedJob, Principal
from service.http.auth import ADMIN_GUARDS
from service.http.errors import ERRORS
from service.http.observe import current_request_id
from service.http.runtime import Runtime


class FailedJobs(msgspec.Struct, kw_only=True):
    jobs: list[FailedJob]
    next_cursor: str | None = None


class RetriedJob(msgspec.Struct, kw_only=True):
    id: UUID
    retried: int
    status: str  # pending: embedded again soon


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]
    guards = ADMIN_GUARDS

    @get("/failed", responses=ERRORS)
    async def failed_jobs(
        self,
        principal: Principal,
        runtime: Runtime,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
    ) -> FailedJobs:
        """Items whose embedding failed for good, with their last error."""
        after = decode_job_cursor(cursor) if cursor else None
        found = await runtime.across_users(jobs.list_failed, limit=limit + 1, after=after)
        if len(found) <= limit:
            return FailedJobs(jobs=found)
        last = found[limit - 1]
        next_cursor = encode_cursor(last.space, last.user_id, str(last.id))
        return FailedJobs(jobs=found[:limit], next_cursor=next_cursor)

    @post("/{item_id:uuid}/retry", status_code=202, responses=ERRORS)
    async def retry_job(self, principal: Principal, item_id: UUID, runtime: Runtime) -> RetriedJob:
        """Embed a failed item again, with a fresh count of attempts."""
        retried = await runtime.across_users(
            jobs.retry_failed,
            item_id,
            actor=principal.key_id,
            request_id=current_request_id(),
            external=[space.name for space in runtime.spaces.external()],
        )
        if not retried:
            raise NotFound(f"no failed job {item_id}")
        await runtime.wakeups.embed(retried)
        return RetriedJob(id=item_id, retried=len(retried), status="pending")


def decode_job_cursor(cursor: str) -> messages.Job:
    """The failed job a page of failed jobs starts after; a malformed cursor is a 422."""
    space, user_id, item_id = decode_cursor(cursor, parts=3)
    try:
        return messages.Job(space, user_id, UUID(item_id))
    except ValueError:
        raise InvalidInput("invalid cursor") from None
