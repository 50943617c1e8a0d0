"""GET /v1/status (admin): the embedding work at a glance, for people and `engram status`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from models.jobs import status
from models.types import Principal
from service.http.auth import ADMIN_GUARDS
from service.http.errors import ERRORS
from service.http.runtime import Runtime


class ServiceStatus(msgspec.Struct, kw_only=True):
    spaces: list[status.SpaceStatus]
    queue: status.QueueDepth | None  # None: the broker did not answer
    failures: list[status.FailureReason]
    checked_at: datetime


class StatusController(Controller):
    path = "/v1/status"
    tags = ["jobs"]
    guards = ADMIN_GUARDS

    @get("/", responses=ERRORS)
    async def status(
        self,
        principal: Principal,
        runtime: Runtime,
        top: Annotated[int, Parameter(ge=1, le=100)] = 5,
    ) -> ServiceStatus:
        """Jobs by space and state, throughput, the oldest pending job, the broker's queue and
        the ``top`` most common errors of failing jobs."""
        found = {s.space: s for s in await runtime.across_users(status.space_status)}
        spaces = [
            found.get(name) or status.SpaceStatus(space=name) for name in runtime.spaces.names()
        ]
        spaces += [s for name, s in sorted(found.items()) if name not in runtime.spaces.names()]
        return ServiceStatus(
            spaces=spaces,
            queue=await runtime.wakeups.queue_depth(),
            failures=await runtime.across_users(status.failure_reasons, limit=top),
            checked_at=datetime.now(UTC),
        )
