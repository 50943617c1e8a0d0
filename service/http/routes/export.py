"""The user as a whole, moved: export as NDJSON, and import of such an export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.response import Stream

from models.db.scope import set_scope
from models.transfer import export, importer
from models.transfer.format import MEDIA_TYPE
from models.transfer.reader import Reader, numbered_lines
from models.types import Principal
from service.http.auth import USER_GUARDS
from service.http.errors import ERRORS
from service.http.observe import current_request_id
from service.http.runtime import Runtime

STREAM_CHUNK_BYTES = 64 * 1024  # lines are sent in pieces of about this size


@dataclass
class _TakesNdjson(Operation):
    """The import's body in the OpenAPI document: NDJSON, read as a stream by the handler."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={MEDIA_TYPE: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))},
            description="an export of GET /v1/users/{user_id}/export, one JSON object a line",
            required=True,
        )


class ExportController(Controller):
    path = "/v1/users/{user_id:str}"
    tags = ["users"]
    guards = USER_GUARDS

    @get("/export", media_type=MEDIA_TYPE, responses=ERRORS)
    async def export_user(self, owner: str, runtime: Runtime) -> Stream:
        """Everything of this user as NDJSON, vectors included (docs/api.md, "Export").

        An unknown user is an empty export: the header and the end line.
        """
        lines = _export(runtime, owner)
        # the snapshot opens here, so an unreachable database is still a 503, not a cut stream
        header = await anext(lines)
        return Stream(
            _pieces(header, lines),
            media_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="engram-{owner}.ndjson"'},
        )

    @post(
        "/import",
        status_code=200,
        responses=ERRORS,
        opt={"body": MEDIA_TYPE},
        operation_class=_TakesNdjson,
        # an export outgrows the body limit of other routes: ENGRAM_MAX_IMPORT_BYTES applies
        # (counted in ``_limited``); this only lifts Litestar's own limit out of its way
        request_max_body_size=2**62,
    )
    async def import_user(
        self, owner: str, principal: Principal, request: Request[Any, Any, Any], runtime: Runtime
    ) -> importer.Imported:
        """Import an export into this user, idempotently: what the user already has stays.

        Every line is checked before anything is written (a bad one is a 422 naming it);
        usable vectors are stored as they are, other items are queued for embedding.
        """
        reader = Reader(limits=runtime.settings.limits, spaces=runtime.spaces)
        limit = runtime.settings.limits.max_import_bytes
        body = _limited(request, limit)
        async for number, line in numbered_lines(body):
            reader.feed(number, line)
        plan = reader.finish()
        await runtime.limiter.charge(principal.key_id, plan.unembedded)
        answer, jobs = await runtime.as_user(
            owner,
            importer.write_import,
            owner,
            plan,
            spaces=runtime.spaces,
            request_id=current_request_id(),
        )
        await runtime.wakeups.embed(jobs)
        return answer


async def _limited(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[bytes]:
    """The body as it streams in, refused (413) as soon as it is known to be over ``limit``."""
    if (request.content_length or 0) > limit:
        raise RequestEntityTooLarge(f"an import is at most {limit} bytes")
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise RequestEntityTooLarge(f"an import is at most {limit} bytes")
        yield chunk


async def _export(runtime: Runtime, user_id: str) -> AsyncIterator[bytes]:
    """The export's lines, read in one snapshot on a connection held for the whole stream."""
    async with runtime.pool.connection() as conn, conn.transaction():
        await export.begin_snapshot(conn)
        await set_scope(conn, user_id)
        async for line in export.export_lines(conn, user_id, runtime.spaces.all()):
            yield line


async def _pieces(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Lines gathered into pieces of about ``STREAM_CHUNK_BYTES``."""
    piece = bytearray(first)
    async for line in rest:
        piece += line
        if len(piece) >= STREAM_CHUNK_BYTES:
            yield bytes(piece)
            piece.clear()
    if piece:
        yield bytes(piece)
