"""Does anything stall the API? ``/healthz`` while the worst request of each class runs.

    make bench-stall
    python bench/stall.py --no-write

Starts embedded servers and one API process at the default limits (no worker: what is
measured is the API's event loop alone), makes the users the requests need, then asks
``/healthz`` over and over on new connections, from a thread of its own: first with nothing
else running (the raw limit: what a probe costs on this machine), then while each request
of tests/support/worst.py runs alone, again and again for a few seconds. The promise is
that ``/healthz`` answers within 100 ms meanwhile. Prints the figures, and writes
docs/benchmarks-stall.json and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import httpx
from sections import write_section
from soak import free_port, start_stack, stop_stack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.worst import HealthWatch, Stall, watch_each, worst_requests

from models.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
ADMIN = {"Authorization": "Bearer soak-admin"}
PROMISE_MS = 100


def idle(url: str, seconds: float) -> Stall:
    """``/healthz`` with nothing else running."""
    with HealthWatch(url) as watch:
        started = time.perf_counter()
        time.sleep(seconds)
        probes = watch.between(started, time.perf_counter())
    return Stall("nothing else (the raw limit)", 0, 200, 0.0, len(probes),
                 median(probes) * 1000, max(probes) * 1000)  # fmt: skip


def write_docs(result: dict[str, object], stalls: list[Stall]) -> None:
    (DOCS / "benchmarks-stall.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {s.issue_class or '-'} | {s.name} | {s.status} | {s.request_seconds:.2f} | "
        f"{s.probes} | {s.median_ms:.1f} | {s.worst_ms:.1f} |"
        for s in stalls
    )
    limits = result["limits"]
    assert isinstance(limits, dict)
    body = f"""## Nothing stalls the API

From `make bench-stall` (`bench/stall.py`, {result["date"]}): one API process at the default
limits (documents of {limits["max_document_bytes"]:,} bytes, bodies of
{limits["max_body_bytes"]:,} bytes, memories of {limits["max_content_chars"]:,} characters),
on embedded PostgreSQL and Redis, no worker, on the shared {result["machine"]} machine
(1-minute load average {result["load_before"]:.1f} at the start). A thread asks `/healthz`
over and over, each on a new connection, while each request runs alone, again and again for
at least {result["seconds_each"]:.0f} s; the first row is the same probe with nothing else
running, in the same run. The promise: `/healthz` within {PROMISE_MS} ms while any single
request is processed. Class is the class of issue 19's review the request is the worst of;
status is its last answer's (the bad key's turn from 401 to 429 once its address is past
`ENGRAM_FAILED_KEYS_PER_MINUTE`).

| class | request | status | request s (median) | probes | `/healthz` median ms | worst ms |
| --- | --- | --- | --- | --- | --- | --- |
{rows}
"""
    write_section("stall", body, before="<!-- bench-ingest -->")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="each request runs this long")
    parser.add_argument("--memories", type=int, default=150, help="long memories of a user")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    args = parser.parse_args()
    limits = Settings.from_env().limits
    home = Path(tempfile.mkdtemp(prefix="engram-bench-stall-"))
    load_before = os.getloadavg()[0]
    procs, url, _, servers = start_stack(home, free_port(), workers=0)
    try:
        with httpx.Client(base_url=url, timeout=600) as http:
            requests = worst_requests(
                http,
                ADMIN,
                document_bytes=limits.max_document_bytes,
                content_chars=limits.max_content_chars,
                body_bytes=limits.max_body_bytes,
                long_memories=args.memories,
            )
            stalls = [idle(url, args.seconds)]
            stalls += watch_each(url, http, requests, at_least=args.seconds)
    finally:
        stop_stack(procs, servers)
    for s in stalls:
        print(f"{s.name:60} {s.status} {s.request_seconds:7.2f} s  /healthz x{s.probes:4} "
              f"median {s.median_ms:6.1f} ms  worst {s.worst_ms:6.1f} ms")  # fmt: skip
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core",
        "load_before": load_before,
        "seconds_each": args.seconds,
        "limits": {
            "max_document_bytes": limits.max_document_bytes,
            "max_body_bytes": limits.max_body_bytes,
            "max_content_chars": limits.max_content_chars,
        },
        "stalls": [asdict(s) for s in stalls],
    }
    if not args.no_write:
        write_docs(result, stalls)
    worst = max(s.worst_ms for s in stalls[1:])
    print(f"worst /healthz while a request ran: {worst:.1f} ms (promise {PROMISE_MS} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
