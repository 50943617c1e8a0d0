"""Transactions as one user: every query runs scoped, so row-level security admits only
that user's rows; lost connections are retried."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from models.db.batch import Statement, forget_prepared, run_batch
from models.db.pool import CONNECTION_ERRORS, transaction_settings

log = logging.getLogger("engram.db")

RETRY_ATTEMPTS = 3
RETRY_BASE_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0
# The scope of deliberate cross-user work; "*" can never be a user id.
ALL_USERS = "*"

P = ParamSpec("P")
T = TypeVar("T")


async def run_scoped(
    pool: AsyncConnectionPool,
    scope: str,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``work(conn, ...)`` in one transaction scoped to a user, retrying lost connections.

    ``scope`` is a user id, or ``ALL_USERS`` for the few deliberate cross-user operations
    (the worker's claims, admin routes). Row-level security admits only rows of that
    scope, so a query that forgets its user condition still sees nobody else's data. The
    scope is set with ``set_config(..., true)``: it ends with the transaction and never
    travels to the next user of a pooled connection.

    Only for idempotent work: a retry may repeat a statement whose answer was lost. Errors
    of the SQL itself (constraints, syntax) are never retried. Back-off 0.1 s, 0.4 s; at
    most 3 attempts, then the error goes up (the HTTP edge answers 503).
    """
    return await _retrying(
        pool, lambda conn: _in_transaction(conn, scope, False, work, *args, **kwargs)
    )


async def run_scoped_once(
    pool: AsyncConnectionPool,
    scope: str,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``run_scoped`` in one attempt, for a replica: a read that fails there goes to the
    primary at once instead of waiting out the retries."""
    return await _retrying(
        pool, lambda conn: _in_transaction(conn, scope, False, work, *args, **kwargs), attempts=1
    )


async def read_snapshot(
    pool: AsyncConnectionPool,
    scope: str,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``run_scoped`` in one consistent snapshot (``REPEATABLE READ``, read only), for work
    that reads much and must see it all as of one moment (an export)."""
    return await _retrying(
        pool, lambda conn: _in_transaction(conn, scope, True, work, *args, **kwargs)
    )


# Runs read-only statements for one user in one round trip, with settings: ``read_batch``
# bound to a pool and a user.
Reader = Callable[[Sequence[Statement], Mapping[str, str]], Awaitable[list[list[Any]]]]


async def read_batch(
    pool: AsyncConnectionPool,
    scope: str,
    statements: Sequence[Statement],
    settings: Mapping[str, str] | None = None,
    *,
    attempts: int = RETRY_ATTEMPTS,
) -> list[list[Any]]:
    """Run read-only ``statements`` scoped to a user in one round trip; each one's rows.

    The scope (with any ``settings``, set in the same statement) and the statements go out
    in one write, then one Sync (``models.db.batch``): the server runs everything before a
    Sync as one implicit transaction, so the scope and settings (``set_config(..., true)``)
    cover exactly these statements and end with them, like ``run_scoped``'s. Only for
    statements that read; lost connections are retried, and so is a batch that found its
    prepared statements deallocated (by psycopg, after a rollback on that connection).
    """

    async def batch(conn: psycopg.AsyncConnection) -> list[list[Any]]:
        scoped = Statement(*_scope_settings(conn, scope, settings), rows=None)
        try:
            return (await run_batch(conn, [scoped, *statements]))[1:]
        except psycopg.errors.InvalidSqlStatementName:  # forgotten by now: prepared anew
            return (await run_batch(conn, [scoped, *statements]))[1:]

    return await _retrying(pool, batch, attempts=attempts)


async def _in_transaction(
    conn: psycopg.AsyncConnection,
    scope: str,
    snapshot: bool,
    work: Callable[Concatenate[psycopg.AsyncConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    try:
        async with conn.transaction():
            if snapshot:  # the first statement of the transaction
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            await set_scope(conn, scope)
            return await work(conn, *args, **kwargs)
    except BaseException:
        forget_prepared(conn)  # rolled back: psycopg may have deallocated them
        raise


async def _retrying(
    pool: AsyncConnectionPool,
    work: Callable[[psycopg.AsyncConnection], Awaitable[T]],
    *,
    attempts: int = RETRY_ATTEMPTS,
) -> T:
    for attempt in range(1, attempts + 1):
        try:
            # not ``pool.connection()``: its commit on the way out would cost a wait, and
            # ``work`` ends its own transaction (a connection returned inside one is rolled
            # back by the pool)
            conn = await pool.getconn()
            try:
                return await work(conn)
            finally:
                await pool.putconn(conn)
        except CONNECTION_ERRORS as exc:
            if attempt == attempts:
                raise
            delay = min(RETRY_BASE_SECONDS * 4 ** (attempt - 1), RETRY_MAX_SECONDS)
            log.warning("database connection error (%s); retry %d in %.1fs", exc, attempt, delay)
            # the server may have restarted: replace every idle connection it broke
            await pool.check()
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def set_scope(
    conn: psycopg.AsyncConnection, scope: str, settings: Mapping[str, str] | None = None
) -> None:
    """Admit rows of ``scope`` for the rest of the current transaction; ``settings``
    (configuration parameters) last as long."""
    await conn.execute(*_scope_settings(conn, scope, settings))


def _scope_settings(
    conn: psycopg.AsyncConnection, scope: str, settings: Mapping[str, str] | None
) -> tuple[str, list[str]]:
    """The statement starting a transaction as ``scope``: with the connection's own
    settings (``transaction_settings``), and ``settings``."""
    return set_configs({**transaction_settings(conn), **_scope(scope), **(settings or {})})


def _scope(scope: str) -> dict[str, str]:
    all_users = scope == ALL_USERS
    return {
        "engram.user_id": "" if all_users else scope,
        "engram.all_users": "on" if all_users else "off",
    }


def set_configs(settings: Mapping[str, str]) -> tuple[str, list[str]]:
    """One statement setting each parameter for the rest of the transaction."""
    calls = ", ".join("set_config(%s, %s, true)" for _ in settings)
    return f"SELECT {calls}", [part for item in settings.items() for part in item]
