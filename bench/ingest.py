"""Ingest throughput: a folder of files through ``engram ingest`` end to end, against raw
``encode()``.

    make bench-ingest              # 2,000 generated files (about 10,000 chunks)
    python bench/ingest.py --docs 200 --no-write

Writes the corpus as a folder of Markdown and text files, starts embedded servers, one API
and one worker process, and runs ``engram ingest FOLDER --user bench`` (the CLI reads the
files, uploads JSON batches of 100, waits for every document and prints the counts); the
time is the CLI's whole run, and its counts must say every file is ready. A second run
must find every file unchanged. Then, with the stack stopped, encodes the very same chunk
texts with the same model and backend in this process (batches of 64, as the worker does):
the raw limit. Prints both and their ratio, and writes docs/benchmarks-ingest.json and a
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
from sections import write_section
from soak import WORDS, free_port, start_stack, stop_stack

from models.embedding.local import LocalEmbedder
from models.embedding.spaces import MINILM_384
from models.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
BATCH = 100
ENCODE_BATCH = 64


def corpus(count: int, seed: int = 3) -> list[dict[str, str]]:
    """Documents of five paragraphs of about 200 words: about five chunks each."""
    rng = random.Random(seed)

    def paragraph() -> str:
        return " ".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
            for _ in range(18)
        )

    return [
        {"title": f"doc-{i}.txt", "content": "\n\n".join(paragraph() for _ in range(5))}
        for i in range(count)
    ]


def write_folder(docs: list[dict[str, str]], folder: Path) -> None:
    """Every other document as Markdown under a heading, the rest as plain text."""
    for i, doc in enumerate(docs):
        if i % 2:
            (folder / f"doc-{i}.txt").write_text(doc["content"])
        else:
            (folder / f"doc-{i}.md").write_text(f"# Document {i}\n\n{doc['content']}")


def run_cli(url: str, key: str, folder: Path) -> tuple[float, dict[str, int]]:
    """Seconds ``engram ingest`` takes over ``folder``, and the counts it prints last."""
    command = [sys.executable, "-m", "service.ops.cli", "ingest", str(folder), "--user", "bench",
               "--collection", "bench", "--url", url, "--key", key]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    summary = [line for line in done.stderr.splitlines() if line.startswith("ready ")]
    if done.returncode != 0 or not summary:
        raise SystemExit(f"engram ingest failed ({done.returncode}):\n{done.stderr[-2000:]}")
    # "ready 10, failed 0, pending 0, unchanged 0, not ingested 0"
    counts = {name.strip(): int(n) for name, n in re.findall(r"([a-z ]+) (\d+)", summary[-1])}
    return seconds, counts


def chunk_texts(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT content FROM chunks ORDER BY id")]


def raw_encode(texts: list[str]) -> float:
    """Seconds the model takes to encode ``texts`` in batches of 64, in this process."""
    options = msgspec.structs.replace(Settings.from_env().encoder, batch_size=ENCODE_BATCH)
    embedder = LocalEmbedder(MINILM_384, options)
    embedder.load()
    embedder.encode(texts[:ENCODE_BATCH])  # warm up
    started = time.perf_counter()
    for start in range(0, len(texts), ENCODE_BATCH * 4):  # as the worker groups its claims
        embedder.encode(texts[start : start + ENCODE_BATCH * 4])
    return time.perf_counter() - started


def write_docs(result: dict[str, object]) -> None:
    (DOCS / "benchmarks-ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    body = f"""## Ingest throughput

From `make bench-ingest` (`bench/ingest.py`, {result["date"]}): a folder of
{result["documents"]:,} generated Markdown and text files ({result["chunks"]:,} chunks of at
most 256 word pieces) ingested by `engram ingest` (JSON batches of {BATCH} files) through one
API process, embedded by one worker process (2 threads, the `{result["backend"]}` encoder
backend), on embedded PostgreSQL and Redis, on the shared 2-core machine. End to end is the
CLI's whole run: reading, uploading, and waiting until it printed `ready
{result["documents"]:,}`; run again, it found every file unchanged in
{result["rerun_seconds"]:.1f} s. Raw is the same chunk texts encoded by the same model and
backend in one process, {ENCODE_BATCH} a batch, with the stack stopped, in the same run.

| | chunks/s |
| --- | --- |
| end to end (HTTP, chunking, Postgres, Redis, worker) | {result["ingest_chunks_per_s"]:.1f} |
| raw `encode()` | {result["raw_chunks_per_s"]:.1f} |
| **ratio** | **{result["ratio"]:.2f}** (target 0.85) |
"""
    write_section("ingest", body, before="<!-- bench-spaces -->")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    args = parser.parse_args()
    docs = corpus(args.docs)
    home = Path(tempfile.mkdtemp(prefix="engram-bench-ingest-"))
    folder = home / "files"
    folder.mkdir()
    write_folder(docs, folder)
    procs, url, database_url, servers = start_stack(home, free_port(), workers=1)
    try:
        seconds, counts = run_cli(url, "soak-admin", folder)
        if counts.get("ready") != len(docs):
            raise SystemExit(f"engram ingest did not make every file ready: {counts}")
        rerun_seconds, again = run_cli(url, "soak-admin", folder)
        if again.get("unchanged") != len(docs):
            raise SystemExit(f"a second engram ingest did not skip every file: {again}")
        texts = chunk_texts(database_url)
    finally:
        stop_stack(procs, servers)
    raw_seconds = raw_encode(texts)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "documents": len(docs),
        "chunks": len(texts),
        "backend": Settings.from_env().encoder.backend,
        "cli_counts": counts,
        "ingest_seconds": round(seconds, 2),
        "rerun_seconds": round(rerun_seconds, 2),
        "raw_seconds": round(raw_seconds, 2),
        "ingest_chunks_per_s": len(texts) / seconds,
        "raw_chunks_per_s": len(texts) / raw_seconds,
        "ratio": raw_seconds / seconds,
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write_docs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
