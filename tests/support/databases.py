"""Fresh databases on the test servers, for tests that must not see what the rest of the suite
stored: a restore's target, or a backfill, whose work grows with every item in the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from models.db import schema
from support.processes import Servers


class Database(NamedTuple):
    owner_url: str  # migrations and checks of what is stored
    app_url: str  # as engram_app, as the API connects


def with_dbname(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def redis_db(servers: Servers, number: int) -> str:
    """A Redis database of its own, so a stack's wake-ups reach only its own worker."""
    return f"{servers.redis_url}{'&' if '?' in servers.redis_url else '?'}db={number}"


@contextmanager
def fresh_database(servers: Servers, *, migrated: bool = True) -> Iterator[Database]:
    """A new database on the test server (migrated unless asked not to), dropped after."""
    name = f"engram_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        database = Database(
            owner_url=with_dbname(servers.database_url, name),
            app_url=with_dbname(servers.app_url, name),
        )
        if migrated:
            schema.upgrade(database.owner_url)
        yield database
    finally:
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def servers_on(servers: Servers, database: Database, redis: int) -> Servers:
    """The same servers, seen through ``database`` and Redis database number ``redis``."""
    return Servers(
        database_url=database.owner_url,
        app_url=database.app_url,
        redis_url=redis_db(servers, redis),
        home=servers.home,
    )


@contextmanager
def servers_of_their_own(servers: Servers, redis: int) -> Iterator[Servers]:
    """The test servers with a fresh database and Redis database ``redis``: what a module
    writes there neither sees the rest of the suite's data nor leaves it work to do."""
    with fresh_database(servers) as database:
        yield servers_on(servers, database, redis)
