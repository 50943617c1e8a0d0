"""Scale-out: throughput as API and worker processes are added, against one PostgreSQL.

    make bench-scaleout                       # 3 rounds of 20 s per configuration
    make bench-scaleout QUERIES=vector        # searches send vectors: no model in the API
    python bench/scaleout.py --seconds 30 --rounds 5 --clients 16

One embedded PostgreSQL (with a streaming replica made by ``pg_basebackup`` from its
binaries) and one Redis; three ``engram api`` processes reading the primary alone, two more
with ``ENGRAM_READ_DATABASE_URL`` on the replica, and one or two ``engram worker`` processes,
as ``engram api``/``engram worker`` run them (connected as ``engram_app``). A closed loop of
``--clients`` concurrent clients (each sends its next request when its last is answered)
spreads its requests over a configuration's API processes in turn: searches with a text
query (embedded by the API), or with ``--queries vector`` a random vector, and, a
``--write-share`` of the time, writes of 1 to 3 memories (embedded by the workers), over
``--users`` users seeded with ``--seed`` memories each. Every run sends queries and memories
of its own: a repeated query would be answered from the API's cache, a repeated memory is a
duplicate no worker embeds.

The configurations run interleaved, round after round, and each figure is the median of its
rounds (each round's requests/s are printed too); between configurations the workers finish
the backlog. Requests/s counts answered requests of the measured window; p50/p95 are of
every request in it. ``embedded/s`` is how fast the workers made vectors during the window.
For the replica configurations, the share of reads the replica served (and of those, the
share that waited for replay) is read from the API processes' ``engram_replica_reads``
counters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from models.db import schema
from service.ops.embedded import EmbeddedPostgres, EmbeddedRedis, postgres_bin

ADMIN_KEY = "scaleout-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WORDS = [
    "harbour",
    "tide",
    "ferry",
    "bakery",
    "orchard",
    "violin",
    "chess",
    "garden",
    "river",
    "mountain",
    "winter",
    "summer",
    "bicycle",
    "piano",
    "market",
    "lighthouse",
    "choir",
    "library",
    "train",
    "coffee",
    "bread",
    "cheese",
    "rain",
    "snow",
]


@dataclass(frozen=True)
class Config:
    name: str
    apis: int
    workers: int
    replica: bool = False


CONFIGS = (
    Config("1 API, 1 worker", apis=1, workers=1),
    Config("2 API, 1 worker", apis=2, workers=1),
    Config("3 API, 1 worker", apis=3, workers=1),
    Config("2 API, 2 workers", apis=2, workers=2),
    Config("1 API, 1 worker, replica", apis=1, workers=1, replica=True),
    Config("2 API, 1 worker, replica", apis=2, workers=1, replica=True),
)


@dataclass
class Measured:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"search": [], "write": []})
    errors: list[str] = field(default_factory=list)
    embedded: int = 0
    # of the reads: the replica's share, and the share of those it served after a wait
    replica_share: tuple[float, float] | None = None

    def rate(self, kind: str | None = None) -> float:
        kinds = [kind] if kind else list(self.latencies)
        return sum(len(self.latencies[k]) for k in kinds) / self.seconds


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def random_unit_vector(rng: random.Random, dims: int = 384) -> list[float]:
    values = [rng.gauss(0, 1) for _ in range(dims)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0


async def client_loop(
    client: httpx.AsyncClient,
    urls: list[str],
    turn: list[int],
    users: list[str],
    write_share: float,
    text_queries: bool,
    deadline: float,
    rng: random.Random,
    measured: Measured,
) -> None:
    while time.monotonic() < deadline:
        url = urls[turn[0] % len(urls)]
        turn[0] += 1
        user = rng.choice(users)
        if rng.random() < write_share:
            kind = "write"
            memories = [{"content": sentence(rng, 12)} for _ in range(rng.randint(1, 3))]
            request = client.post(
                f"{url}/v1/users/{user}/memories", json={"memories": memories}, headers=ADMIN
            )
        else:
            kind = "search"
            body = (
                {"query": sentence(rng, 5), "k": 10}
                if text_queries
                else {"vector": random_unit_vector(rng), "k": 10}
            )
            request = client.post(f"{url}/v1/users/{user}/search", json=body, headers=ADMIN)
        started = time.perf_counter()
        try:
            answer = await request
        except httpx.HTTPError as exc:
            measured.errors.append(f"{kind}: {exc!r}")
            continue
        if answer.status_code >= 400:
            measured.errors.append(f"{kind}: {answer.status_code} {answer.text[:200]}")
            continue
        measured.latencies[kind].append(time.perf_counter() - started)


async def run_load(
    urls: list[str],
    users: list[str],
    *,
    clients: int,
    seconds: float,
    write_share: float,
    text_queries: bool,
    seed: int,
) -> Measured:
    """``seed`` must differ between runs: a repeated query would be answered from the API's
    query cache, and a repeated memory is a duplicate, which no worker embeds."""
    measured = Measured(seconds)
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        deadline = time.monotonic() + seconds
        turn = [0]
        await asyncio.gather(
            *(
                client_loop(
                    client,
                    urls,
                    turn,
                    users,
                    write_share,
                    text_queries,
                    deadline,
                    random.Random(rng.random()),
                    measured,
                )
                for _ in range(clients)
            )
        )
    return measured


class Stack:
    """The servers and processes of the run; API processes are started once, workers as a
    configuration asks."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.postgres = EmbeddedPostgres(home)
        self.redis = EmbeddedRedis(home)
        self.owner_url = self.postgres.start()
        self.redis_url = self.redis.start()
        schema.upgrade(self.owner_url)
        schema.enable_app_login(self.owner_url)
        self.app_url = self.postgres.url_for(schema.APP_ROLE)
        self.replica = Replica(home, self.postgres)
        self.log = open(home / "processes.log", "wb")  # noqa: SIM115
        self.apis: list[tuple[subprocess.Popen[bytes], str]] = []
        self.replica_apis: list[tuple[subprocess.Popen[bytes], str]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "ENGRAM_HOME": str(self.home),
            "ENGRAM_DATABASE_URL": self.app_url,
            "ENGRAM_REDIS_URL": self.redis_url,
            "ENGRAM_ADMIN_KEY": ADMIN_KEY,
            "ENGRAM_LOG_LEVEL": "WARNING",
            "ENGRAM_RATE_LIMIT_PER_MINUTE": "0",
            "ENGRAM_FAILED_KEYS_PER_MINUTE": "0",
            **extra,
        }

    def start_apis(self) -> None:
        replica_url = self.replica.url_for(schema.APP_ROLE)
        for replica in (False, True):
            for _ in range(2 if replica else 3):
                port = free_port()
                extra = {"ENGRAM_PORT": str(port)}
                if replica:
                    extra["ENGRAM_READ_DATABASE_URL"] = replica_url
                process = self._spawn("api", self.env(**extra))
                (self.replica_apis if replica else self.apis).append(
                    (process, f"http://127.0.0.1:{port}")
                )
        for process, url in self.apis + self.replica_apis:
            wait_ready(process, url)

    def set_workers(self, count: int) -> None:
        while len(self.workers) > count:
            stop(self.workers.pop())
        while len(self.workers) < count:
            self.workers.append(self._start_worker())

    def _start_worker(self) -> subprocess.Popen[bytes]:
        """A worker, once it takes messages: one still loading its model would hold the
        messages it prefetched while the other worker idles."""
        log = self.home / f"worker-{len(self.workers)}-{time.monotonic_ns()}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "service.ops.cli", "worker"],
                env=self.env(ENGRAM_LOG_LEVEL="INFO"),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 300
        while b"Worker process is ready" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a worker did not start: see {log}")
            time.sleep(0.2)
        return process

    def urls(self, config: Config) -> list[str]:
        chosen = self.replica_apis if config.replica else self.apis
        return [url for _, url in chosen[: config.apis]]

    def ready_vectors(self) -> int:
        with psycopg.connect(self.owner_url) as conn:
            found = conn.execute("SELECT count(*) FROM embed_state WHERE status = 'ready'")
            return int(found.fetchone()[0])  # type: ignore[index]

    def drain(self, timeout: float = 300) -> None:
        """Wait until no item waits for its vector."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.owner_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                found = conn.execute("SELECT count(*) FROM embed_state WHERE status = 'pending'")
                if found.fetchone() == (0,):
                    return
                time.sleep(0.5)
        raise RuntimeError("the workers did not finish the backlog")

    def close(self) -> None:
        for process in [p for p, _ in self.apis + self.replica_apis] + self.workers:
            stop(process)
        self.replica.remove()
        self.redis.stop()
        self.postgres.stop()

    def _spawn(self, part: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "service.ops.cli", part],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Replica:
    """A hot standby of the embedded server, by ``pg_basebackup -R``, on a socket of its own."""

    def __init__(self, home: Path, primary: EmbeddedPostgres) -> None:
        self.data = home / "replica"
        self.sockets = Path(tempfile.mkdtemp(prefix="engram-replica-"))
        run_as = primary._run_as
        self.data.mkdir(mode=0o700)
        if run_as is not None:
            for path in (self.data, self.sockets):
                os.chown(path, run_as.pw_uid, run_as.pw_gid)
        self._user = (run_as.pw_uid, run_as.pw_gid) if run_as else None
        self._run(
            "pg_basebackup",
            f"--dbname=host={primary.sockets} user=postgres",
            f"--pgdata={self.data}",
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "start", "-w", "-l", str(self.data / "server.log"),
            "-o", f"-c listen_addresses='' -c unix_socket_directories='{self.sockets}' "
            "-c hot_standby=on",
        )  # fmt: skip

    def url_for(self, user: str) -> str:
        return f"postgresql://{user}@/engram?host={self.sockets}"

    def remove(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "stop", "-w", "-m", "fast")
        shutil.rmtree(self.sockets, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(postgres_bin() / program), *args],
            user=self._user[0] if self._user else None,
            group=self._user[1] if self._user else None,
            check=True,
            capture_output=True,
            cwd="/",
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"an API process exited ({process.returncode}): see its log")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def replica_reads(urls: list[str]) -> dict[str, float]:
    """The API processes' engram_replica_reads counters, added up."""
    totals: dict[str, float] = {}
    pattern = r'^engram_replica_reads_total\{outcome="([a-z_]+)"\} ([0-9.e+]+)$'
    for url in urls:
        text = httpx.get(f"{url}/metrics", headers=ADMIN, timeout=10).text
        for outcome, count in re.findall(pattern, text, re.MULTILINE):
            totals[outcome] = totals.get(outcome, 0) + float(count)
    return totals


def seed(urls: list[str], users: list[str], per_user: int) -> None:
    rng = random.Random(1)
    with httpx.Client(timeout=120) as client:
        for n, user in enumerate(users):
            memories = [{"content": sentence(rng, 12)} for _ in range(per_user)]
            answer = client.post(
                f"{urls[n % len(urls)]}/v1/users/{user}/memories",
                json={"memories": memories},
                headers=ADMIN,
            )
            answer.raise_for_status()


def measure(
    stack: Stack, config: Config, users: list[str], args: argparse.Namespace, seed: int
) -> Measured:
    stack.set_workers(config.workers)
    urls = stack.urls(config)
    # a few seconds' warm-up: connections, caches, the replica's first probe
    asyncio.run(
        run_load(
            urls,
            users,
            clients=args.clients,
            seconds=3,
            write_share=0,
            text_queries=args.queries == "text",
            seed=-seed,
        )
    )
    before_reads = replica_reads(urls) if config.replica else {}
    before = stack.ready_vectors()
    started = time.monotonic()
    measured = asyncio.run(
        run_load(
            urls,
            users,
            clients=args.clients,
            seconds=args.seconds,
            write_share=args.write_share,
            text_queries=args.queries == "text",
            seed=seed,
        )
    )
    measured.seconds = time.monotonic() - started
    measured.embedded = stack.ready_vectors() - before
    if config.replica:
        after = replica_reads(urls)
        delta = {k: after.get(k, 0) - before_reads.get(k, 0) for k in after}
        total = sum(delta.values())
        waited = delta.get("replica_after_wait", 0)
        served = delta.get("replica", 0) + waited
        if total:
            measured.replica_share = (served / total, waited / total)
    stack.drain()
    return measured


def report(results: dict[str, list[Measured]], args: argparse.Namespace) -> None:
    print(
        f"scaleout: load average {args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"{os.cpu_count()} cores, {args.clients} clients in a closed loop, "
        f"{args.write_share:.0%} writes, {args.queries} queries, "
        f"{args.users} users x {args.seed} memories, "
        f"{args.rounds} rounds of {args.seconds:.0f} s; medians of the rounds"
    )
    header = (
        f"{'configuration':28s} {'req/s':>7s} {'search/s':>8s} {'search p50':>10s} "
        f"{'p95':>7s} {'write p50':>9s} {'p95':>7s} {'embedded/s':>10s} {'replica (waited)':>15s} "
        f"{'errors':>6s}  req/s by round"
    )
    print(header)
    for name, runs in results.items():

        def median(values: list[float]) -> float:
            return statistics.median(values) if values else float("nan")

        shares = [r.replica_share for r in runs if r.replica_share is not None]
        share = (
            f"{median([s[0] for s in shares]):.0%} ({median([s[1] for s in shares]):.0%})"
            if shares
            else "-"
        )
        print(
            f"{name:28s} {median([r.rate() for r in runs]):7.1f} "
            f"{median([r.rate('search') for r in runs]):8.1f} "
            f"{median([percentile(r.latencies['search'], 0.5) for r in runs]):8.1f}ms "
            f"{median([percentile(r.latencies['search'], 0.95) for r in runs]):5.1f}ms "
            f"{median([percentile(r.latencies['write'], 0.5) for r in runs]):7.1f}ms "
            f"{median([percentile(r.latencies['write'], 0.95) for r in runs]):5.1f}ms "
            f"{median([r.embedded / r.seconds for r in runs]):10.1f} "
            f"{share:>15s} "
            f"{sum(len(r.errors) for r in runs):6d}  " + " ".join(f"{r.rate():.0f}" for r in runs)
        )
    for runs in results.values():
        for run in runs:
            for line in run.errors[:3]:
                print("   ", line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seed", type=int, default=100, help="memories per user at the start")
    parser.add_argument("--write-share", type=float, default=0.2)
    parser.add_argument(
        "--queries",
        choices=("text", "vector"),
        default="text",
        help="text: the API embeds each query; vector: the client sends a random vector",
    )
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="engram-scaleout-"))
    stack = Stack(home)
    try:
        stack.start_apis()
        stack.set_workers(2)
        users = [f"scale-{n}" for n in range(args.users)]
        seed([url for _, url in stack.apis], users, args.seed)
        stack.drain(timeout=900)
        results: dict[str, list[Measured]] = {config.name: [] for config in CONFIGS}
        for round_ in range(args.rounds):
            for n, config in enumerate(CONFIGS):
                fresh = 1 + round_ * len(CONFIGS) + n  # new queries and memories each run
                results[config.name].append(measure(stack, config, users, args, fresh))
                print(f"round {round_ + 1}: {config.name} done", file=sys.stderr, flush=True)
        report(results, args)
        return 0 if not any(r.errors for runs in results.values() for r in runs) else 1
    except Exception:
        print((home / "processes.log").read_text()[-5000:], file=sys.stderr)
        raise
    finally:
        stack.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
