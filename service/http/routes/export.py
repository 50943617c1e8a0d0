"""The user as a whole, moved: export as NDJSON, and import of such an export."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.response import Stream
from psycopg import AsyncConnection

from models.db.scope import read_snapshot
from models.transfer import export, importer
from models.transfer.format import MEDIA_TYPE
from models.transfer.reader import Reader
from models.types import Principal
from service.http.auth import USER_GUARDS
from service.http.errors import ERRORS
from service.http.observe import current_request_id
from service.http.runtime import Runtime

STREAM_CHUNK_BYTES = 64 * 1024  # an export is sent in pieces of this size
SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024  # a larger export is spooled to a temporary file
EXPORTS_PER_USER = 2  # at a time, per API process


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

        An unknown user is an empty export: the header and the end line. The export is read
        whole from one snapshot before its first byte is sent, so a client that reads slowly
        (or not at all) holds no database connection; each API process runs at most
        ``EXPORTS_PER_USER`` exports of one user at a time (429 beyond).
        """
        with runtime.exporting(owner, at_most=EXPORTS_PER_USER):
            spool = await _spooled(runtime, owner)
        return Stream(
            _pieces(spool),
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

        Every line is checked before the import commits (a bad one is a 422 naming it, and
        nothing changes); usable vectors are stored as they are, other items are queued for
        embedding.
        """
        body = await _received(request, runtime.settings.limits.max_import_bytes)
        reader = functools.partial(
            Reader,
            limits=runtime.settings.limits,
            spaces=runtime.spaces,
            languages=await runtime.text_configs(),
        )
        # charged whole, borrowing from the key's next minutes what this one cannot hold
        admit = functools.partial(runtime.limiter.charge_borrowing, principal.key_id)
        answer, jobs = await runtime.as_user(
            owner,
            importer.write_import,
            owner,
            body,
            reader,
            spaces=runtime.spaces,
            admit=admit,
            request_id=current_request_id(),
        )
        await runtime.wakeups.embed(jobs)
        return answer


async def _received(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to be over ``limit``."""
    if (request.content_length or 0) > limit:
        raise RequestEntityTooLarge(f"an import is at most {limit} bytes")
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise RequestEntityTooLarge(f"an import is at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _spooled(runtime: Runtime, user_id: str) -> SpooledTemporaryFile[bytes]:
    """The user's export, read from one snapshot into memory, or a temporary file once it
    outgrows ``SPOOL_IN_MEMORY_BYTES``."""
    # closed by ``_pieces`` once sent, or here on failure
    spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115

    async def read(conn: AsyncConnection) -> None:
        spool.seek(0)
        spool.truncate()  # a retried snapshot starts again
        async for line in export.export_lines(conn, user_id, runtime.spaces.all()):
            spool.write(line)

    try:
        await read_snapshot(runtime.pool, user_id, read)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


async def _pieces(spool: SpooledTemporaryFile[bytes]) -> AsyncIterator[bytes]:
    """The spooled export in pieces of ``STREAM_CHUNK_BYTES``; the spool is closed after."""
    try:
        while piece := spool.read(STREAM_CHUNK_BYTES):
            yield piece
    finally:
        spool.close()
