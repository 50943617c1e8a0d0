"""A batch of statements in one write and one wait: libpq's pipeline, below psycopg's.

psycopg's pipeline mode flushes after every statement, so a search's batch (the scope, the
statement, the Sync) reached PostgreSQL as four writes, each of which may wake the server
on its own, and cost the API a dozen system calls and event-loop turns more. Here the whole
batch goes out in one write, and the answers are read as they arrive, on the same psycopg
connection, with psycopg's adapters (``psycopg.adapt.Transformer``) for values and rows.

A result's rows come from a row maker, which its statement's ``rows`` factory makes from
the column names: once per factory and column names, then kept (``_row_maker``).

Each connection prepares the statements that repeat (``Statement.prepare``) the first
time it runs them, unless its pool never prepares (``prepare_threshold`` None, for
PgBouncer before 1.21): the prepare goes out in the same write. psycopg deallocates every
prepared statement of a connection after a rollback (``DEALLOCATE ALL``, lest a plan
outlive what it refers to), so ``models.db.scope`` forgets them when it rolls back
(``forget_prepared``); a batch that still finds one of its statements gone (anyone's
``DEALLOCATE``) raises ``InvalidSqlStatementName`` and the connection's statements are
forgotten, to be prepared again by the next batch (``models.db.read_batch`` sends it once
more at once).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import abc, errors, pq
from psycopg.adapt import PyFormat, Transformer

# Makes a row from its values, in the statement's column order.
RowMaker = Callable[[Sequence[Any]], Any]
# Given a result's column names (once per result), what makes each of its rows.
RowFactory = Callable[[Sequence[str]], RowMaker]

T = TypeVar("T")
MAX_PREPARED = 200  # per connection; statements beyond it are parsed each time
MAX_ROW_MAKERS = 1000  # row makers kept, by factory and column names; then made afresh
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


def tuples(names: Sequence[str]) -> RowMaker:
    """Rows as tuples of their values."""
    return tuple


@cache  # one factory per class, so that its row makers are kept (``_row_maker``)
def named(cls: Callable[..., T]) -> Callable[[Sequence[str]], Callable[[Sequence[Any]], T]]:
    """Rows as ``cls(**columns)``, as psycopg's ``class_row`` makes them."""

    def factory(names: Sequence[str]) -> Callable[[Sequence[Any]], T]:
        def make(values: Sequence[Any]) -> T:
            return cls(**dict(zip(names, values, strict=True)))

        return make

    return factory


@dataclass(frozen=True)
class Statement:
    """One statement of a batch, with psycopg's placeholders (``%(name)s`` with a dict,
    ``%s`` with a sequence); ``rows`` makes its rows from their column names (tuples by
    default; None: its rows are not read), one object for every statement it serves (a
    module's function, or ``named(cls)``) since its row makers are kept by it; ``prepare``
    False for a statement unlikely to repeat."""

    query: str
    params: dict[str, Any] | Sequence[Any] | None = None
    rows: RowFactory | None = tuples
    prepare: bool = True


# the names of the statements each connection has prepared, by (query, parameter types)
_PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection, dict[Any, bytes]] = (
    weakref.WeakKeyDictionary()
)
_NAMES = (b"_engram_%d" % n for n in itertools.count())  # psycopg's own are _pg3_<n>


async def run_batch(
    conn: psycopg.AsyncConnection, statements: Sequence[Statement]
) -> list[list[Any]]:
    """Each statement's rows, the batch sent in one write and followed by one Sync.

    Outside a transaction the server runs everything before the Sync as one implicit
    transaction; inside one (``conn.transaction()``) the batch is part of it. The first
    error is raised once every answer is in, with the connection as healthy as after
    psycopg's own errors. If the batch is abandoned half way (cancelled, the connection
    lost), the connection is closed, so its pool replaces it rather than reuse it with
    answers pending.
    """
    pgconn = conn.pgconn
    if pgconn.pipeline_status != pq.PipelineStatus.OFF:
        raise psycopg.ProgrammingError("run_batch inside psycopg's pipeline mode")
    transformer: abc.Transformer = Transformer.from_context(conn)
    bound = [_bound(transformer, statement) for statement in statements]  # may raise: before
    prepared = _PREPARED.setdefault(conn, {})
    may_prepare = conn.prepare_threshold is not None
    pgconn.enter_pipeline_mode()
    try:
        preparing: list[tuple[Any, bytes] | None] = []
        for statement, (query, values, types, formats) in zip(statements, bound, strict=True):
            key = (query, types)
            name = prepared.get(key) if may_prepare else None
            new = None
            if name is None and statement.prepare and may_prepare and len(prepared) < MAX_PREPARED:
                name = next(_NAMES)
                pgconn.send_prepare(name, query, param_types=types)
                new = (key, name)
            if name is None:
                pgconn.send_query_params(query, values, param_types=types, param_formats=formats)
            else:
                pgconn.send_query_prepared(name, values, param_formats=formats)
            preparing.append(new)
        pgconn.pipeline_sync()
        await _flush(pgconn)
        answers: list[list[Any]] = []
        error: psycopg.Error | None = None
        for statement, new in zip(statements, preparing, strict=True):
            if new is not None:
                result = await _next_result(pgconn)
                if result.status == pq.ExecStatus.COMMAND_OK:
                    prepared[new[0]] = new[1]
                error = error or _error(conn, result)
            result = await _next_result(pgconn)
            error = error or _error(conn, result)
            if statement.rows is None or result.status != pq.ExecStatus.TUPLES_OK:
                answers.append([])
                continue
            transformer.set_pgresult(result)
            make = _row_maker(statement.rows, conn, result)
            answers.append(transformer.load_rows(0, result.ntuples, make))
        sync = await _next_result(pgconn)
        if sync.status != pq.ExecStatus.PIPELINE_SYNC:
            raise psycopg.InternalError(f"pipeline out of step: {sync.status!r}")
        pgconn.exit_pipeline_mode()
    except BaseException:
        await conn.close()
        raise
    if error is not None:
        if isinstance(error, errors.InvalidSqlStatementName):
            prepared.clear()
        raise error
    return answers


_ROW_MAKERS: dict[tuple[RowFactory, tuple[bytes | None, ...]], RowMaker] = {}


def _row_maker(
    factory: RowFactory, conn: psycopg.AsyncConnection, result: pq.abc.PGresult
) -> RowMaker:
    """What makes ``result``'s rows: ``factory``'s row maker for its column names, made
    the first time they are seen (a search's statements return the same columns each
    time)."""
    fields = tuple(result.fname(i) for i in range(result.nfields))
    maker = _ROW_MAKERS.get((factory, fields))
    if maker is None:
        if len(_ROW_MAKERS) >= MAX_ROW_MAKERS:
            _ROW_MAKERS.clear()
        encoding = conn.info.encoding
        maker = factory([(field or b"").decode(encoding) for field in fields])
        _ROW_MAKERS[(factory, fields)] = maker
    return maker


def forget_prepared(conn: psycopg.AsyncConnection) -> None:
    """Forget what this connection prepared: after a rollback psycopg may have sent
    ``DEALLOCATE ALL`` (without this, the next batch would find out by failing once)."""
    _PREPARED.pop(conn, None)


def _bound(
    transformer: abc.Transformer, statement: Statement
) -> tuple[bytes, Sequence[Any], tuple[int, ...] | None, Sequence[pq.Format] | None]:
    """The statement's query for the server, its values dumped, their types and formats."""
    query, names = _converted(statement.query)
    if names is None:
        values = list(statement.params or ())
    else:
        assert isinstance(statement.params, Mapping), "named parameters come in a dict"
        values = [statement.params[name] for name in names]
    dumped = transformer.dump_sequence(values, [PyFormat.AUTO] * len(values))
    return query, dumped, transformer.types, transformer.formats


@lru_cache(maxsize=1024)
def _converted(query: str) -> tuple[bytes, tuple[str, ...] | None]:
    """The query with PostgreSQL's ``$n`` placeholders, and the parameter names in their
    order (None: the parameters are a sequence). A name used twice is one parameter."""
    names: dict[str, int] = {}
    positional = 0

    def placeholder(match: re.Match[str]) -> str:
        nonlocal positional
        if match.group(0) == "%%":
            return "%"
        if match.group(1) is None:
            positional += 1
            return f"${positional}"
        return f"${names.setdefault(match.group(1), len(names) + 1)}"

    converted = _PLACEHOLDER.sub(placeholder, query)
    if names and positional:
        raise psycopg.ProgrammingError("a query takes named or positional parameters, not both")
    return converted.encode(), tuple(names) if names else None


def _error(conn: psycopg.AsyncConnection, result: pq.abc.PGresult) -> psycopg.Error | None:
    """The error a result reports (None for rows, a command's success, or a statement
    skipped after an earlier one's error)."""
    if result.status in _OK or result.status == pq.ExecStatus.PIPELINE_ABORTED:
        return None
    return errors.error_from_result(result, encoding=conn.info.encoding)


async def _flush(pgconn: pq.abc.PGconn) -> None:
    while pgconn.flush():  # more to send than the socket took
        await _ready(pgconn.socket, writing=True)


async def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
    """The next result of the pipeline, reading from the server as it arrives (the empty
    marker between two statements' results is skipped)."""
    while True:
        if pgconn.is_busy():
            await _ready(pgconn.socket, writing=False)
            pgconn.consume_input()
            continue
        result = pgconn.get_result()
        if result is not None:
            return result


async def _ready(fd: int, *, writing: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writing:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
