"""Embedding spaces: what is configured, how full each is, and filling or dropping one."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post

from models.embedding.spaces import Space
from models.errors import Conflict, InvalidInput, NotFound
from models.jobs import fills, status
from models.types import Fill, Principal, SpaceCounts, SpaceInfo
from service.http.auth import admin_only, authenticated
from service.http.errors import ERRORS
from service.http.runtime import Runtime


class DroppedSpace(msgspec.Struct, kw_only=True):
    name: str
    vectors: int


def named_space(runtime: Runtime, name: str) -> Space:
    """The space in the path: an unknown one is a 404 (in a request body it is a 422)."""
    if name not in runtime.spaces.names():
        raise NotFound(f"no space {name!r} (configured: {', '.join(runtime.spaces.names())})")
    return runtime.spaces.get(name)


class SpaceController(Controller):
    path = "/v1/spaces"
    tags = ["spaces"]
    guards = [authenticated]

    @get("/", responses=ERRORS)
    async def list_spaces(self, principal: Principal, runtime: Runtime) -> list[SpaceInfo]:
        """The embedding spaces, what each is the default for, and how full each is."""
        return await describe_spaces(runtime, principal, runtime.spaces.all())

    @get("/{name:str}", responses=ERRORS)
    async def get_space(self, principal: Principal, name: str, runtime: Runtime) -> SpaceInfo:
        """One space, with its counts and fill progress."""
        return (await describe_spaces(runtime, principal, [named_space(runtime, name)]))[0]

    @post("/{name:str}/backfill", status_code=202, responses=ERRORS, guards=[admin_only])
    async def backfill(self, principal: Principal, name: str, runtime: Runtime) -> SpaceInfo:
        """Embed every existing item into this space, in the background; new items too.

        Searches keep being served from every space meanwhile. Progress: ``counts`` and
        ``fill`` here and in ``GET /v1/spaces``.
        """
        space = named_space(runtime, name)
        if space.external:
            raise InvalidInput(
                f"space {name} is external: the server cannot embed items there; its "
                "clients send each item's vector as they write it"
            )
        await runtime.across_users(fills.request_fill, space.name, actor=principal.key_id)
        await runtime.wakeups.fill(space.name)
        return (await describe_spaces(runtime, principal, [space]))[0]

    @delete("/{name:str}", status_code=200, responses=ERRORS, guards=[admin_only])
    async def drop(self, principal: Principal, name: str, runtime: Runtime) -> DroppedSpace:
        """Drop the space's vectors and jobs (not its items); refused for a default space,
        and for an external one (nothing could make its vectors again)."""
        space = named_space(runtime, name)
        if space.external:
            raise Conflict(
                f"space {name} is external: its vectors come from its clients alone and "
                "could not be made again; delete its memories instead"
            )
        if space.default_for:
            raise Conflict(
                f"space {name} is the default for {', '.join(space.default_for)}: "
                "switch the default (ENGRAM_MEMORY_SPACE / ENGRAM_DOCUMENT_SPACE) first"
            )
        vectors = await runtime.across_users(
            fills.drop_space, space.name, space.table, actor=principal.key_id
        )
        return DroppedSpace(name=name, vectors=vectors)


async def describe_spaces(
    runtime: Runtime, principal: Principal, spaces: list[Space]
) -> list[SpaceInfo]:
    """The spaces with their counts and fills, each read once for all of them."""
    if principal.user_id is None:
        counts = await runtime.across_users(status.space_counts)
    else:
        counts = await runtime.as_user(principal.user_id, status.space_counts)
    progress = await runtime.across_users(fills.fill_progress)
    return [_space_out(space, counts.get(space.name, SpaceCounts()), progress.get(space.name))
            for space in spaces]  # fmt: skip


def _space_out(space: Space, counts: SpaceCounts, fill: fills.FillProgress | None) -> SpaceInfo:
    return SpaceInfo(
        name=space.name,
        dims=space.dims,
        provider=space.provider,
        model=space.model,
        default_for=list(space.default_for),
        storage=space.storage,
        max_input_tokens=None if space.external else space.max_input_tokens,
        counts=counts,
        fill=None
        if fill is None
        else Fill(
            requested_at=fill.requested_at,
            filled_at=fill.filled_at,
            complete=fill.filled_at is not None and counts.pending == 0,
        ),
    )
