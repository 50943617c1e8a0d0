"""The ``engram`` command: run everything, or the API, the worker and migrations apart."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from models.db import schema
from models.errors import BackupFailed, ConfigError
from models.observe import metrics
from models.observe.logs import configure_logging
from models.settings import Settings
from models.store import keys

# ASGI, as uvicorn speaks it (lifespan messages too, which Litestar's types leave out)
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram", description="Engram vector memory service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start everything: embedded servers if needed, API, worker")
    commands.add_parser("api", help="serve the HTTP API (needs the database and Redis URLs)")
    commands.add_parser("worker", help="run an embedding worker (needs the URLs)")
    ingest = commands.add_parser(
        "ingest", help="ingest files (text, Markdown, HTML) as documents, with progress"
    )
    ingest.add_argument("paths", nargs="+", type=Path, help="files or folders (walked)")
    ingest.add_argument("--user", required=True, help="the user the documents belong to")
    ingest.add_argument("--collection", default="default", help="collection (default: default)")
    ingest.add_argument("--url", help="the API (default: $ENGRAM_URL, else ENGRAM_HOST:PORT)")
    ingest.add_argument(
        "--key", help="an API key (default: $ENGRAM_API_KEY, else the admin key file)"
    )
    status = commands.add_parser(
        "status", help="pending, failed and ready items by space, queue depth, throughput"
    )
    status.add_argument("--url", help="the API (default: $ENGRAM_URL, else ENGRAM_HOST:PORT)")
    status.add_argument("--key", help="an admin key (default: $ENGRAM_API_KEY, else the key file)")
    status.add_argument("--top", type=int, default=5, help="failure reasons to show (default 5)")
    status.add_argument("--json", action="store_true", help="print the API's JSON answer")
    commands.add_parser(
        "mcp",
        help="the MCP tools over stdio, for desktop clients: forwarded to a running API's /mcp "
        "(ENGRAM_URL, ENGRAM_API_KEY, and ENGRAM_USER for an admin key)",
    )
    migrate = commands.add_parser("migrate", help="migrate the database schema")
    migrate.add_argument(
        "revision", nargs="?", help="target (default: head; --down needs one: a revision or base)"
    )
    migrate.add_argument("--down", action="store_true", help="downgrade to the revision")
    backup = commands.add_parser("backup", help="back up the whole database to a file (pg_dump)")
    backup.add_argument("path", type=Path, help="the file to write (custom-format archive)")
    restore = commands.add_parser(
        "restore", help="restore a backup into an empty database, then migrate it to head"
    )
    restore.add_argument("path", type=Path, help="a file written by `engram backup`")
    restore.add_argument(
        "--clean", action="store_true", help="replace what the backup holds in a non-empty database"
    )
    args = parser.parse_args(argv)
    if args.command == "migrate" and args.down and args.revision is None:
        migrate.error(
            "--down needs a target revision: `engram migrate --down REVISION` "
            "(such as 0013, or base for an empty schema)"
        )

    try:
        settings = Settings.from_env()
        configure_logging(level=settings.logging.level, fmt=settings.logging.format)
        return _COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"engram: {exc}", file=sys.stderr)
        return 2


def _run(settings: Settings, _: argparse.Namespace) -> int:
    from service.ops.supervisor import run_everything

    return run_everything(settings)


def _api(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from service.http.app import create_app

    admin_key = keys.resolve_admin_key(settings.server.admin_key, settings.admin_key_file)
    metrics.ensure_multiprocess_dir()
    server = msgspec.structs.replace(settings.server, admin_key=admin_key)
    app = create_app(msgspec.structs.replace(settings, server=server))
    uvicorn.run(
        _config_errors_in_one_line(app),
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.logging.level.lower(),
        log_config=None,  # uvicorn's lines go through ours (configure_logging)
        timeout_graceful_shutdown=30,
        access_log=False,  # service/http/observe.py logs each request with its id
        # the client's address is the peer's: X-Forwarded-For is read by the app only from
        # ENGRAM_TRUSTED_PROXIES (uvicorn would take it from any local peer)
        proxy_headers=False,
    )
    return 0


def _config_errors_in_one_line(app: Callable[..., Awaitable[None]]) -> ASGIApp:
    """``app``, whose start-up refused for its configuration (a ``ConfigError``: a space
    whose dims disagree, say) is logged as one line; Litestar would hand the server the
    whole traceback of an exception group. Other failures keep their traceback."""

    async def serve(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)  # sent below, once the exception says why
            else:
                await send(message)

        try:
            await app(scope, receive, hold_failure)
        except BaseException as exc:
            reason = _config_error(exc)
            if reason is not None and held:
                held[0] = {**held[0], "message": f"engram api cannot start: {reason}"}
            raise
        finally:
            for message in held:
                await send(message)

    return serve


def _config_error(error: BaseException) -> ConfigError | None:
    """The ``ConfigError`` that ``error`` is, or holds in its exception groups."""
    if isinstance(error, BaseExceptionGroup):
        found = (_config_error(inner) for inner in error.exceptions)
        return next((e for e in found if e is not None), None)
    return error if isinstance(error, ConfigError) else None


def _worker(settings: Settings, _: argparse.Namespace) -> int:
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    settings.require_urls()
    metrics.ensure_multiprocess_dir()
    # dramatiq's own main, here, so that its lines are ours too: each worker process sets
    # up logging again in worker/main.py, on the pipe dramatiq gives it
    args = make_argument_parser().parse_args(  # type: ignore[no-untyped-call]
        [
            "worker.main",
            "--processes",
            "1",
            "--threads",
            str(settings.worker.threads),
            "--queues",
            "embeddings",
            "--skip-logging",
        ]
    )
    return int(dramatiq_main(args))  # type: ignore[no-untyped-call]


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from engram_client import ClientError, Engram

    from service.ops.ingest import ingest

    url, key = _api_url(settings, args), _api_key(settings, args)
    if key is None:
        raise ConfigError("give --key or ENGRAM_API_KEY (a key that may act on the user)")
    with Engram(url, key, timeout=120) as client:
        try:
            return ingest(client, args.paths, user=args.user, collection=args.collection)
        except ClientError as exc:  # refused, or the API is unreachable: say why, no trace
            print(f"\nengram ingest: {exc}", file=sys.stderr)
            return 2


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from service.ops.report import print_status

    key = _api_key(settings, args)
    if key is None:
        raise ConfigError("give --key or ENGRAM_API_KEY (an admin key)")
    return print_status(_api_url(settings, args), key, top=args.top, raw=args.json)


def _api_url(settings: Settings, args: argparse.Namespace) -> str:
    return str(
        args.url
        or os.environ.get("ENGRAM_URL")
        or f"http://{settings.server.host}:{settings.server.port}"
    )


def _api_key(settings: Settings, args: argparse.Namespace) -> str | None:
    key: str | None = args.key or os.environ.get("ENGRAM_API_KEY") or settings.server.admin_key
    if key is None and settings.admin_key_file.exists():
        key = settings.admin_key_file.read_text().strip()
    return key


def _mcp(_settings: Settings, _: argparse.Namespace) -> int:
    from service.mcp.stdio import main as serve_stdio

    return serve_stdio()


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    admin_url = settings.database.admin_url or settings.database.url
    if admin_url is None:
        raise ConfigError(
            "set ENGRAM_ADMIN_DATABASE_URL (the tables' owner) or ENGRAM_DATABASE_URL "
            "(`engram run` migrates by itself)"
        )
    if args.down:
        schema.downgrade(admin_url, args.revision)
        return 0
    if args.revision in (None, "head"):
        from models.embedding.tables import bring_schema_up_to_date

        bring_schema_up_to_date(admin_url, settings)
    else:
        schema.upgrade(admin_url, args.revision)
    if settings.database.app_password:
        schema.enable_app_login(admin_url, password=settings.database.app_password)
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from service.ops.backup import backup

    return _say_done(lambda: backup(settings, args.path))


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from service.ops.backup import restore

    return _say_done(lambda: restore(settings, args.path, clean=args.clean))


def _say_done(work: Callable[[], str]) -> int:
    """Print what ``work`` did (exit 0), or why it failed (exit 1)."""
    try:
        print(work())
    except BackupFailed as exc:
        print(f"engram: {exc}", file=sys.stderr)
        return 1
    return 0


_COMMANDS = {
    "run": _run,
    "api": _api,
    "worker": _worker,
    "ingest": _ingest,
    "status": _status,
    "mcp": _mcp,
    "migrate": _migrate,
    "backup": _backup,
    "restore": _restore,
}

if __name__ == "__main__":
    sys.exit(main())
