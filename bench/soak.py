"""Soak: a bounded mixed ingest + search load against a real stack with two workers.

    make soak                      # 120 s, embedded servers, 1 API + 2 worker processes
    python bench/soak.py --seconds 600 --users 20

Reports errors (must be 0), throughput and latency percentiles, then checks that every
accepted memory ended `ready` with exactly one vector made from its content (or `failed`
with an error). Exits non-zero on any error or lost item.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from models.db import schema
from service.ops.embedded import EmbeddedPostgres, EmbeddedRedis

WORDS = [
    "coffee",
    "tea",
    "garden",
    "violin",
    "lisbon",
    "porto",
    "nurse",
    "chess",
    "sailing",
    "cat",
    "dog",
    "rain",
    "train",
    "book",
    "river",
    "mountain",
    "music",
    "bread",
    "cheese",
    "winter",
    "summer",
    "bicycle",
    "piano",
    "paint",
]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))) + "."


class Load:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"write": [], "search": []}
        self.errors: list[str] = []
        self.accepted: dict[str, list[str]] = {}

    async def user_loop(
        self,
        client: httpx.AsyncClient,
        user: str,
        headers: dict[str, str],
        deadline: float,
        rng: random.Random,
    ) -> None:
        while time.monotonic() < deadline:
            if rng.random() < 0.4:
                body = {"memories": [{"content": sentence(rng)} for _ in range(rng.randint(1, 20))]}
                kind, request = (
                    "write",
                    client.post(f"/v1/users/{user}/memories", json=body, headers=headers),
                )
            else:
                body = {"query": sentence(rng), "k": 10}
                kind, request = (
                    "search",
                    client.post(f"/v1/users/{user}/search", json=body, headers=headers),
                )
            started = time.perf_counter()
            try:
                answer = await request
            except httpx.HTTPError as exc:
                self.errors.append(f"{kind}: {exc!r}")
                continue
            self.latencies[kind].append(time.perf_counter() - started)
            if answer.status_code >= 400:
                self.errors.append(f"{kind}: {answer.status_code} {answer.text[:200]}")
            elif kind == "write":
                self.accepted.setdefault(user, []).extend(
                    m["id"] for m in answer.json()["memories"]
                )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def lost_items(
    database_url: str, accepted: dict[str, list[str]], settle_seconds: float
) -> list[str]:
    deadline = time.monotonic() + settle_seconds
    with psycopg.connect(database_url) as conn:
        while time.monotonic() < deadline:
            pending = conn.execute(
                "SELECT count(*) FROM embed_state WHERE status = 'pending'"
            ).fetchone()
            if pending == (0,):
                break
            time.sleep(1)
        rows = conn.execute(
            "SELECT m.user_id, m.id::text, e.status, e.last_error, "
            "  (SELECT count(*) FROM vec_minilm_384 v WHERE v.user_id = m.user_id "
            "   AND v.item_id = m.id AND v.content_hash = m.content_hash) "
            "FROM memories m JOIN embed_state e "
            "  ON e.user_id = m.user_id AND e.item_id = m.id AND e.space = m.space"
        ).fetchall()
    good = {
        (u, i)
        for u, i, status, error, vectors in rows
        if (status == "ready" and vectors == 1) or (status == "failed" and error)
    }
    return [f"{u}/{i}" for u, ids in accepted.items() for i in ids if (u, i) not in good]


async def run_load(url: str, admin_key: str, *, users: int, seconds: float) -> Load:
    load = Load()
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        keys = {}
        for n in range(users):
            user = f"soak-{n}"
            made = await client.post(
                "/v1/keys", json={"user_id": user}, headers={"Authorization": f"Bearer {admin_key}"}
            )
            made.raise_for_status()
            keys[user] = {"Authorization": f"Bearer {made.json()['key']}"}
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(
                load.user_loop(client, u, h, deadline, random.Random(rng.random()))
                for u, h in keys.items()
            )
        )
    return load


def start_stack(
    home: Path, port: int, *, workers: int = 2
) -> tuple[list[subprocess.Popen[bytes]], str, str, list]:
    postgres, redis = EmbeddedPostgres(home), EmbeddedRedis(home)
    database_url, redis_url = postgres.start(), redis.start()
    schema.upgrade(database_url)
    env = {
        **os.environ,
        "ENGRAM_HOME": str(home),
        "ENGRAM_DATABASE_URL": database_url,
        "ENGRAM_REDIS_URL": redis_url,
        "ENGRAM_PORT": str(port),
        "ENGRAM_ADMIN_KEY": "soak-admin",
        "ENGRAM_LOG_LEVEL": "WARNING",
    }
    log = open(home / "stack.log", "wb")  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service.ops.cli", part],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for part in ("api", *["worker"] * workers)
    ]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    time.sleep(10)  # let the workers load the model
    return procs, url, database_url, [redis, postgres]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_stack(procs: list[subprocess.Popen[bytes]], servers: list) -> None:
    """SIGTERM the API and workers, wait for them, then stop the servers."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=120)
    for server in servers:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--settle-seconds", type=float, default=300)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="engram-soak-"))
    procs, url, database_url, servers = start_stack(home, free_port())
    try:
        load = asyncio.run(run_load(url, "soak-admin", users=args.users, seconds=args.seconds))
        lost = lost_items(database_url, load.accepted, args.settle_seconds)
    finally:
        stop_stack(procs, servers)
    items = sum(len(ids) for ids in load.accepted.values())
    print(f"soak: {args.seconds:.0f} s, {args.users} users, 1 API + 2 worker processes")
    for kind, values in load.latencies.items():
        print(
            f"  {kind:6s} requests {len(values):6d}  {len(values) / args.seconds:7.1f}/s  "
            f"p50 {percentile(values, 0.5):7.1f} ms  p99 {percentile(values, 0.99):7.1f} ms  "
            f"median {statistics.median(values) * 1000 if values else float('nan'):7.1f} ms"
        )
    print(f"  accepted memories {items}  errors {len(load.errors)}  lost {len(lost)}")
    for line in (load.errors + lost)[:20]:
        print("   ", line)
    return 0 if not load.errors and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
