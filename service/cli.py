"""The ``engram`` command: run everything, or the API, the worker and migrations apart."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import msgspec

from models import keys, schema
from models.errors import ConfigError
from models.settings import Settings


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
    migrate = commands.add_parser("migrate", help="migrate the database schema")
    migrate.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    migrate.add_argument("--down", action="store_true", help="downgrade to the revision")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return _COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"engram: {exc}", file=sys.stderr)
        return 2


def _run(settings: Settings, _: argparse.Namespace) -> int:
    from service.supervisor import run_everything

    return run_everything(settings)


def _api(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    admin_key = keys.resolve_admin_key(settings.admin_key, settings.admin_key_file)
    app = create_app(msgspec.structs.replace(settings, admin_key=admin_key))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
        access_log=False,
    )
    return 0


def _worker(settings: Settings, _: argparse.Namespace) -> int:
    settings.require_urls()
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.main",
        "--processes",
        "1",
        "--threads",
        str(settings.worker_threads),
        "--queues",
        "embeddings",
    ]
    os.execv(sys.executable, argv)
    return 0  # not reached


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from service.ingest import ingest

    url = args.url or os.environ.get("ENGRAM_URL") or f"http://{settings.host}:{settings.port}"
    key = args.key or os.environ.get("ENGRAM_API_KEY") or settings.admin_key
    if key is None and settings.admin_key_file.exists():
        key = settings.admin_key_file.read_text().strip()
    if key is None:
        raise ConfigError("give --key or ENGRAM_API_KEY (a key that may act on the user)")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        return ingest(client, args.paths, user=args.user, collection=args.collection)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    admin_url = settings.admin_database_url or settings.database_url
    if admin_url is None:
        raise ConfigError(
            "set ENGRAM_ADMIN_DATABASE_URL (the tables' owner) or ENGRAM_DATABASE_URL "
            "(`engram run` migrates by itself)"
        )
    if args.down:
        schema.downgrade(admin_url, args.revision)
        return 0
    schema.upgrade(admin_url, args.revision)
    if settings.app_db_password:
        schema.enable_app_login(admin_url, password=settings.app_db_password)
    return 0


_COMMANDS = {
    "run": _run,
    "api": _api,
    "worker": _worker,
    "ingest": _ingest,
    "migrate": _migrate,
}

if __name__ == "__main__":
    sys.exit(main())
