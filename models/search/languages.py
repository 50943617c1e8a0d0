"""The languages full text is indexed and searched in: PostgreSQL's text-search
configurations (``english``, ``simple``, ``french``... and any an operator adds)."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import scalar_row
from psycopg_pool import AsyncConnectionPool

from models.db.rows import fetch_all
from models.errors import ConfigError


async def text_configs(conn: AsyncConnection) -> frozenset[str]:
    """The names of the database's text-search configurations."""
    return frozenset(await fetch_all(conn, scalar_row, "SELECT cfgname FROM pg_ts_config"))


async def verify_text_config(pool: AsyncConnectionPool, name: str) -> frozenset[str]:
    """The database's configurations; a ``ConfigError`` if ``name`` is not one of them."""
    async with pool.connection() as conn:
        known = await text_configs(conn)
    if name not in known:
        raise ConfigError(
            f"ENGRAM_TEXT_SEARCH_CONFIG={name} is not a text-search configuration of the "
            f"database; it has: {', '.join(sorted(known))}"
        )
    return known
