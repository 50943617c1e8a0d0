"""Start-up checks: a space's configured length, its provider's and its column's agree.

Each API and worker process checks every space before it serves; a mismatch stops the start
with a message naming all three lengths. An external space has no provider to probe: its
configured length and its column's must agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import AsyncConnection
from psycopg.rows import scalar_row
from psycopg_pool import AsyncConnectionPool

from models.db.rows import fetch_one
from models.db.scope import ALL_USERS, run_scoped
from models.embedding.provider import Embedder
from models.embedding.spaces import Space
from models.errors import ConfigError, EmbeddingError, WrongDimensions

PROBE_TEXT = "engram dimension probe"


async def probe_dimensions(embedder: Embedder) -> int:
    """How long the provider's vectors really are: one embedding of a probe text."""
    try:
        matrix = await embedder.embed([PROBE_TEXT])
    except WrongDimensions as exc:
        return exc.actual
    except EmbeddingError as exc:
        raise ConfigError(
            f"space {embedder.space.name}: the provider failed the start-up probe: {exc}"
        ) from exc
    return int(matrix.shape[1])


def check_dimensions(space: Space, *, provider_dims: int | None, column_dims: int | None) -> None:
    """Refuse to start unless configuration, provider (none: an external space) and
    database agree on the length."""
    if space.dims == column_dims and provider_dims in (None, space.dims):
        return
    column = "missing" if column_dims is None else f"{column_dims} dimensions"
    provider = (
        ""
        if provider_dims is None
        else f"the provider ({space.provider}, {space.model}) returns {provider_dims}, "
    )
    raise ConfigError(
        f"space {space.name}: dimension mismatch: configured {space.dims}, "
        f"{provider}the database column {space.table}.embedding has {column}"
    )


async def column_dimensions(conn: AsyncConnection, space: Space) -> int | None:
    """The length of the space's vector column in the database (None: no such table)."""
    dims = await fetch_one(
        conn,
        scalar_row,
        "SELECT atttypmod FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = 'embedding' AND NOT attisdropped",
        [space.table],
    )
    return None if dims is None else int(dims)


async def verify_spaces(
    pool: AsyncConnectionPool, spaces: Iterable[Space], embedders: dict[str, Embedder]
) -> None:
    """Check every space end to end before serving: configured, provider (each space but
    an external one has an embedder), database dims.

    Raises ``ConfigError`` on a mismatch.
    """
    for space in spaces:
        embedder = embedders.get(space.name)
        provider_dims = None if embedder is None else await probe_dimensions(embedder)
        column_dims = await run_scoped(pool, ALL_USERS, column_dimensions, space)
        check_dimensions(space, provider_dims=provider_dims, column_dims=column_dims)
