"""Fairness: how long one chat memory written with ``wait`` takes while another user's bulk
load is being embedded, against the same with nothing else to do.

    make bench-fairness            # 2,000 documents (about 10,000 chunks), 2 workers
    python bench/fairness.py --docs 200 --no-write

Starts embedded servers, one API and ``--workers`` worker processes. First, with nothing
else waiting, a chat user writes one memory with ``"wait": true`` every second, ``--chats``
times: the raw limit (one memory's embedding and the round trip). Then a loader posts
``--docs`` documents in batches of 100 (the bulk lane) with nothing else to do, timed until
none is pending: the bulk load alone. Then another loader posts the same documents, and as
soon as the first batch is
accepted the chat user writes the same number of memories the same way while the bulk is
embedded; each answer is timed by the client and must be ``ready``, and the loader's items
still pending are counted at each, to show the bulk was still under way. Prints medians
and 95th percentiles of both chat runs and their ratio, and the bulk load's time beside its
time alone, and writes docs/benchmarks-fairness.json
and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from ingest import corpus
from sections import write_section
from soak import free_port, percentile, start_stack, stop_stack

DOCS = Path(__file__).resolve().parent.parent / "docs"
ADMIN = {"Authorization": "Bearer soak-admin"}
BATCH = 100


def chat(
    http: httpx.Client, user: str, count: int, pending: Callable[[], int]
) -> list[tuple[float, int]]:  # fmt: skip
    """``count`` memories written with ``wait``, a second apart: each one's seconds, and the
    bulk items still pending when it was ready."""
    timings = []
    for n in range(count):
        body = {"memories": [{"content": f"chat message {n}: the train leaves at {n} pm"}],
                "wait": True}  # fmt: skip
        started = time.perf_counter()
        answer = http.post(f"/v1/users/{user}/memories", json=body, headers=ADMIN)
        seconds = time.perf_counter() - started
        if answer.status_code != 200 or answer.json()["memories"][0]["status"] != "ready":
            raise SystemExit(f"chat write {n}: {answer.status_code} {answer.text[:300]}")
        timings.append((seconds, pending()))
        time.sleep(max(0.0, 1.0 - seconds))
    return timings


def load(
    http: httpx.Client, user: str, docs: list[dict[str, str]], accepted: threading.Event
) -> None:
    for start in range(0, len(docs), BATCH):
        body = {"documents": docs[start : start + BATCH]}
        answer = http.post(f"/v1/users/{user}/documents", json=body, headers=ADMIN)
        if answer.status_code not in (200, 202):
            raise SystemExit(f"bulk batch at {start}: {answer.status_code} {answer.text[:300]}")
        accepted.set()


def summary(seconds: list[float]) -> dict[str, object]:
    """Median, 95th percentile and worst, and every time in the order they were taken."""
    return {"p50_s": percentile(seconds, 0.50) / 1000, "p95_s": percentile(seconds, 0.95) / 1000,
            "max_s": max(seconds), "each_s": [round(s, 3) for s in seconds]}  # fmt: skip


def write_docs(result: dict) -> None:
    (DOCS / "benchmarks-fairness.json").write_text(json.dumps(result, indent=2) + "\n")
    idle, busy = result["idle"], result["under_bulk"]
    p50, p95, worst = (f"{idle[k]:.2f} s" for k in ("p50_s", "p95_s", "max_s"))
    busy_p50, busy_p95, busy_worst = (f"{busy[k]:.2f} s" for k in ("p50_s", "p95_s", "max_s"))
    ratio_p50 = f"{busy['p50_s'] / idle['p50_s']:.1f}x"
    ratio_p95 = f"{busy['p95_s'] / idle['p95_s']:.1f}x"
    body = f"""## Fairness under a bulk load

From `make bench-fairness` (`bench/fairness.py`, {result["date"]}): one API and
{result["workers"]} worker processes on embedded PostgreSQL and Redis, on the shared
{result["machine"]} machine (1-minute load average {result["load_before"]:.1f} at the start).
A chat user writes one memory with `"wait": true` every second, {result["chats"]} times, first
with nothing else waiting (the raw limit), then while another user's {result["documents"]:,}
documents ({result["chunks"]:,} chunks, posted in batches of {BATCH}: the bulk lane) are
embedded. Times are the client's, until the answer says `ready`. While the chat user wrote,
the loader still had {result["bulk_pending_min"]:,} to {result["bulk_pending_max"]:,} chunks
waiting; the bulk load took {result["bulk_seconds"]:.0f} s in all, against
{result["bulk_alone_seconds"]:.0f} s for the same documents of another user with no chat
beside them, just before ({result["bulk_seconds"] / result["bulk_alone_seconds"]:.2f}x).

| chat memory with `wait` | p50 | p95 | worst |
| --- | --- | --- | --- |
| nothing else waiting (raw limit) | {p50} | {p95} | {worst} |
| during the bulk load | {busy_p50} | {busy_p95} | {busy_worst} |
| **ratio** | **{ratio_p50}** | **{ratio_p95}** | |
"""
    write_section("fairness", body, before="<!-- bench-stall -->")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=2000)  # about 10,000 chunks
    parser.add_argument("--chats", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    args = parser.parse_args()
    docs = corpus(args.docs)
    home = Path(tempfile.mkdtemp(prefix="engram-bench-fairness-"))
    load_before = os.getloadavg()[0]
    procs, url, database_url, servers = start_stack(home, free_port(), workers=args.workers)
    try:
        with psycopg.connect(database_url, autocommit=True) as db:

            def pending(user: str = "loader") -> int:
                row = db.execute(
                    "SELECT count(*) FROM embed_state WHERE user_id = %s AND status = 'pending'",
                    [user],
                ).fetchone()
                return int(row[0]) if row else 0

            with httpx.Client(base_url=url, timeout=600) as http:
                idle = chat(http, "chatter-idle", args.chats, pending)
                started = time.perf_counter()  # the same bulk load, alone
                load(http, "loader-alone", docs, threading.Event())
                while pending("loader-alone"):
                    time.sleep(0.5)
                bulk_alone_seconds = time.perf_counter() - started
                accepted = threading.Event()
                started = time.perf_counter()
                loader = threading.Thread(target=load, args=(http, "loader", docs, accepted))
                loader.start()
                accepted.wait()
                busy = chat(http, "chatter", args.chats, pending)
                loader.join()
                while pending():
                    time.sleep(0.5)
                bulk_seconds = time.perf_counter() - started
                chunks = db.execute(
                    "SELECT count(*) FROM chunks WHERE user_id = 'loader'"
                ).fetchone()[0]
    finally:
        stop_stack(procs, servers)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core",
        "load_before": load_before,
        "workers": args.workers,
        "chats": args.chats,
        "documents": args.docs,
        "chunks": int(chunks),
        "bulk_seconds": bulk_seconds,
        "bulk_alone_seconds": bulk_alone_seconds,
        "bulk_pending_min": min(n for _, n in busy),
        "bulk_pending_max": max(n for _, n in busy),
        "bulk_pending_each": [n for _, n in busy],
        "idle": summary([s for s, _ in idle]),
        "under_bulk": summary([s for s, _ in busy]),
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write_docs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
