"""Start-up checks: a space's configured length, its provider's and its column's agree.

Each API and worker process checks every space before it serves; a mismatch stops the start
with a message naming all three lengths.
"""

from __future__ import annotations

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


def check_dimensions(space: Space, *, provider_dims: int, column_dims: int | None) -> None:
    """Refuse to start unless configuration, provider and database agree on the length."""
    if space.dims == provider_dims == column_dims:
        return
    column = "missing" if column_dims is None else f"{column_dims} dimensions"
    raise ConfigError(
        f"space {space.name}: dimension mismatch: configured {space.dims}, "
        f"the provider ({space.provider}, {space.model}) returns {provider_dims}, "
        f"the database column {space.table}.embedding has {column}"
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


async def verify_spaces(pool: AsyncConnectionPool, embedders: dict[str, Embedder]) -> None:
    """Check every space end to end before serving: configured, provider, database dims.

    Raises ``ConfigError`` on a mismatch.
    """
    for embedder in embedders.values():
        provider_dims = await probe_dimensions(embedder)
        column_dims = await run_scoped(pool, ALL_USERS, column_dimensions, embedder.space)
        check_dimensions(embedder.space, provider_dims=provider_dims, column_dims=column_dims)
