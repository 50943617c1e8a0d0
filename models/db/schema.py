"""Schema migrations through Alembic, driven from code (``engram migrate``, tests, readiness)."""

from __future__ import annotations

from importlib.resources import files

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import AsyncConnection, sql
from psycopg.rows import scalar_row

from models.db.rows import fetch_one


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the bundled ``migrations`` package and this database."""
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url))
    return config


def sqlalchemy_url(database_url: str) -> str:
    """Alembic runs on SQLAlchemy: point it at the psycopg 3 dialect."""
    scheme, sep, rest = database_url.partition("://")
    if scheme in {"postgres", "postgresql", "postgresql+psycopg"}:
        return f"postgresql+psycopg{sep}{rest}".replace("%", "%%")
    return database_url.replace("%", "%%")


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Migrate the database down to ``revision``."""
    command.downgrade(alembic_config(database_url), revision)


async def current_revision(conn: AsyncConnection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return await fetch_one(
        conn,
        scalar_row,
        "SELECT (SELECT version_num FROM alembic_version) "
        "WHERE to_regclass('alembic_version') IS NOT NULL",
    )


def head_revision() -> str:
    """The revision that ``upgrade head`` reaches."""
    head = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    assert head is not None
    return head


APP_ROLE = "engram_app"


def enable_app_login(admin_url: str, *, password: str | None = None) -> None:
    """Let the application role log in (with ``password``, if the server needs one)."""
    statement = sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(APP_ROLE))
    if password:
        statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)
