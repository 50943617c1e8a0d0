"""What the HTTP API adds to a search: small users' searches through one or more API processes,
through the search code in-process, as the service's own statements raw and as the floor's raw
SQL, in turns, in one run.

    python bench/search.py --rows 100000 --home /tmp/h --no-write   # loads the data once
    python bench/http_overhead.py --home /tmp/h
    python bench/http_overhead.py --home /tmp/h --api /tmp/before --api .   # A/B

Uses the data and embedded servers ``bench/search.py`` left in ``--home``. Each ``--api`` is
a checkout of this repository that ``engram api`` is started from (its own process, as
shipped: rate limits leased from Redis, keys remembered), so two versions of the service are
timed against each other query by query. The users are the small ones (searched exactly),
where the HTTP layer is the largest share of a search: what it adds does not depend on the
table's size. The service's own statements (``service_sql``: its scope, then its vector
statement, as its role, row security on) against the floor's simpler one show what the
service's SQL adds; the search code in-process against them, what its Python adds. Prints
each run's median, its difference to the raw floor and to the search code in-process, the
median of paired differences between the APIs, each API's CPU time per search (all its
threads, from the scheduler's count), and what one search costs each API in PostgreSQL
transactions and Redis commands. The harness's own modules (the raw SQL, the search code
in-process) are the ones on its path: with ``PYTHONPATH`` set to one checkout,
every API is measured against the same floor.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import redis
from pgvector.psycopg import register_vector
from search import (
    ADMIN,
    DIMS,
    EXACT_MAX_ROWS,
    Api,
    InProcess,
    clustered,
    raw_batch,
    raw_sql,
    scope_of,
    through_service,
    user_sizes,
)

from models.db import schema
from models.db.batch import Statement
from models.embedding.spaces import MINILM_384
from models.search.query import SearchQuery
from models.search.statements import GENERIC_PLANS, NO_PARALLEL_WORKERS, Statements
from service.ops.embedded import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


def start_api(checkout: Path, home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[Any], Api]:
    """``engram api`` started from ``checkout`` (its own modules first on the path)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "service.ops.cli", "api"],
        cwd=checkout,
        env={**env, "ENGRAM_HOME": str(home), "ENGRAM_PORT": str(port)},
    )
    client = Api(port)
    while not client.ready():
        if process.poll() is not None:
            raise RuntimeError(f"engram api from {checkout} exited: {process.returncode}")
        time.sleep(0.3)
    return process, client


def cpu_seconds(pid: int) -> float:
    """CPU time a process has run so far, all its threads (the scheduler's count, in ns)."""
    total = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def counters(admin_url: str, redis_url: str) -> tuple[int, dict[str, int]]:
    """The database's transactions so far, and the commands Redis has processed, by name."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    with redis.Redis.from_url(redis_url) as client:
        stats = client.info("commandstats")
    commands = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return (int(row[0]) if row else 0), commands


def costs(
    client: Api, users: list[str], centers: np.ndarray, admin_url: str, redis_url: str, n: int
) -> dict[str, Any]:
    """PostgreSQL transactions and Redis commands per search through ``client``, alone."""
    rng = np.random.default_rng(12)
    for user in users:
        client.key_for(user)
    time.sleep(11)  # a backend reports its counts within 10 s of going idle
    before = counters(admin_url, redis_url)
    for i in range(n):
        through_service(client, users[i % len(users)], clustered(rng, centers, 1)[0])
    time.sleep(11)
    after = counters(admin_url, redis_url)
    redis_commands = {
        name: (calls - before[1].get(name, 0)) / n
        for name, calls in after[1].items()
        # the counting connection's own: its handshake and INFO
        if name.split("|")[0] not in ("info", "client", "hello") and calls > before[1].get(name, 0)
    }
    return {"pg_transactions": (after[0] - before[0]) / n, "redis_commands": redis_commands}


def service_statement(user: str, query: np.ndarray) -> Statement:
    """The vector statement the service sends for a small user's plain search."""
    statements = Statements(MINILM_384, user, SearchQuery(vector=query, k=10), cap=EXACT_MAX_ROWS)
    return statements.vector("memory", "exact")


def service_sql(conn: psycopg.Connection[Any], user: str, statement: Statement) -> float:
    """Seconds for what the service sends for that search, raw through psycopg as the
    service's role: the scope with the search's settings, then the statement (counted, gated,
    naming the message of a hit), in one round trip."""
    settings = scope_of(user) | NO_PARALLEL_WORKERS | GENERIC_PLANS
    return raw_batch(conn, [statement], settings, prepare=True)


def report(times: dict[str, list[float]], apis: list[str], cpu: dict[str, float]) -> None:
    """Medians, their differences to the floor and to the search code, CPU, pairs."""
    ms = {name: [t * 1000 for t in values] for name, values in times.items()}
    med = {name: statistics.median(values) for name, values in ms.items()}
    print(f"\n{'run':<28} {'p50 ms':>8} {'- raw':>8} {'- in-proc':>10} {'p90 ms':>8}")
    for name, values in ms.items():
        ordered = sorted(values)
        print(
            f"{name:<28} {med[name]:8.3f} {med[name] - med['raw_sql']:8.3f} "
            f"{med[name] - med['in_process']:10.3f} {ordered[int(0.9 * len(ordered))]:8.3f}"
        )
    for name in apis:
        print(f"{name} CPU per search: {cpu[name] / len(times[name]) * 1e6:.0f} us")
    for a, b in itertools.pairwise(apis):
        paired = [y - x for x, y in zip(ms[a], ms[b], strict=True)]
        print(
            f"paired {b} - {a}: median {statistics.median(paired) * 1000:+.0f} us "
            f"(p50 ratio {med[b] / med[a]:.3f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="a bench/search.py home")
    parser.add_argument("--rows", type=int, default=100_000, help="as loaded in --home")
    parser.add_argument("--api", type=Path, action="append", help="a checkout (default: .)")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--max-items", type=int, default=50, help="the users' largest size")
    args = parser.parse_args()
    checkouts = [c.resolve() for c in args.api or [ROOT]]
    sizes = user_sizes(args.rows, max(10, args.rows // 50))
    centers = np.random.default_rng(0).normal(size=(1000, DIMS)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    small = [f"u{i}" for i, size in enumerate(sizes) if size <= args.max_items]
    users = random.Random(13).sample(small, min(50, len(small)))
    postgres, redis_server = EmbeddedPostgres(args.home), EmbeddedRedis(args.home)
    admin_url, redis_url = postgres.start(), redis_server.start()
    schema.upgrade(admin_url)
    schema.enable_app_login(admin_url)
    shipped = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ENGRAM_RATE_LIMIT_PER_MINUTE", "ENGRAM_KEY_CACHE_SECONDS")
    }
    env = {**shipped, "ENGRAM_DATABASE_URL": postgres.url_for(schema.APP_ROLE),
           "ENGRAM_REDIS_URL": redis_url, "ENGRAM_ADMIN_KEY": ADMIN,
           "ENGRAM_LOG_LEVEL": "WARNING"}  # fmt: skip
    names = [f"api{n}:{c.name or c}" for n, c in enumerate(checkouts)]
    started: list[subprocess.Popen[Any]] = []
    clients: list[Api] = []
    try:
        for n, checkout in enumerate(checkouts):
            process, client = start_api(checkout, args.home / f"http-overhead-{n}", env)
            started.append(process)
            clients.append(client)
        for client in clients[1:]:
            client.tokens = clients[0].tokens  # one key per user, for every API
        for user in users:
            clients[0].key_for(user)
        direct = InProcess(postgres.url_for(schema.APP_ROLE), exact_max_rows=EXACT_MAX_ROWS)
        with (
            psycopg.connect(admin_url, autocommit=True) as conn,
            psycopg.connect(postgres.url_for(schema.APP_ROLE), autocommit=True) as app,
        ):
            register_vector(conn)
            register_vector(app)  # its settings come with each scope, as the service's do
            for name, value in (NO_PARALLEL_WORKERS | GENERIC_PLANS).items():
                conn.execute(f"SET {name} = {value}")
            rng = np.random.default_rng(3)
            asked = [(random.Random(n).choice(users), clustered(rng, centers, 1)[0])
                     for n in range(args.queries + 200)]  # fmt: skip
            times: dict[str, list[float]] = {
                name: [] for name in [*names, "in_process", "service_sql", "raw_sql"]
            }
            cpu = dict.fromkeys(names, 0.0)
            for n, (user, query) in enumerate(asked):
                runs: dict[str, Callable[[], float]] = {
                    name: functools.partial(through_service, client, user, query)
                    for name, client in zip(names, clients, strict=True)
                }
                runs["in_process"] = functools.partial(direct.search, user, query)
                runs["service_sql"] = functools.partial(
                    service_sql, app, user, service_statement(user, query)
                )
                runs["raw_sql"] = functools.partial(raw_sql, conn, user, query, big=False)
                # in a new order each time: a run right after an API's finds that process
                # still finishing its answer, and the later ones find the user's pages cached
                order = random.Random(n).sample(list(runs), len(runs))
                for name in order:
                    process = started[names.index(name)] if name in names else None
                    before = cpu_seconds(process.pid) if process else 0.0
                    took = runs[name]()
                    if n >= 200:  # the first ones warm every side
                        times[name].append(took)
                        if process:
                            cpu[name] += cpu_seconds(process.pid) - before
        direct.close()
        report(times, names, cpu)
        for name, client in zip(names, clients, strict=True):
            print(f"{name} per search: {costs(client, users, centers, admin_url, redis_url, 300)}")
    finally:
        for client in clients:
            client.close()
        for process in started:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        redis_server.stop()
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
