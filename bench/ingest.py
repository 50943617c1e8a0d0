"""Ingest throughput: documents through the HTTP API end to end, against raw ``encode()``.

    make bench-ingest              # 2,000 generated documents (about 10,000 chunks)
    python bench/ingest.py --docs 200

Starts embedded servers, one API and one worker process; posts the corpus as JSON batches
of 100 documents and times until every batch is completed: chunks per second end to end.
Then, with the stack stopped, encodes the very same chunk texts with the same model in this
process (batches of 64, as the worker does): the raw limit. Prints both and their ratio,
and writes docs/benchmarks-ingest.json and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from soak import WORDS, free_port, start_stack, stop_stack

from models.embedding import LocalEmbedder
from models.spaces import MINILM_384

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


def ingest(url: str, key: str, docs: list[dict[str, str]]) -> float:
    """Seconds from the first upload until every batch is completed."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        started = time.perf_counter()
        batches = []
        for start in range(0, len(docs), BATCH):
            body = {"documents": docs[start : start + BATCH], "collection": "bench"}
            answer = client.post("/v1/users/bench/documents", json=body)
            answer.raise_for_status()
            batches.append(answer.json()["batch_id"])
        waiting = list(batches)
        while waiting:
            status = client.get(f"/v1/users/bench/batches/{waiting[0]}").json()
            if status["status"] == "in_progress":
                time.sleep(0.2)
                continue
            if status["status"] != "completed":
                raise SystemExit(f"batch {waiting[0]} ended {status}")
            waiting.pop(0)
        return time.perf_counter() - started


def chunk_texts(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT content FROM chunks ORDER BY id")]


def raw_encode(texts: list[str]) -> float:
    """Seconds the model takes to encode ``texts`` in batches of 64, in this process."""
    embedder = LocalEmbedder(MINILM_384, batch_size=ENCODE_BATCH)
    embedder.load()
    embedder.encode(texts[:ENCODE_BATCH])  # warm up
    started = time.perf_counter()
    for start in range(0, len(texts), ENCODE_BATCH * 4):  # as the worker groups its claims
        embedder.encode(texts[start : start + ENCODE_BATCH * 4])
    return time.perf_counter() - started


def write_docs(result: dict[str, object]) -> None:
    (DOCS / "benchmarks-ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    section = f"""<!-- bench-ingest -->
## Ingest throughput

From `make bench-ingest` (`bench/ingest.py`, {result["date"]}): {result["documents"]:,}
generated documents ({result["chunks"]:,} chunks of at most 256 word pieces) posted as JSON
batches of {BATCH} to one API process, embedded by one worker process (2 threads), on
embedded PostgreSQL and Redis, on the shared 2-core machine. End to end is from the first
upload until every batch is `completed`. Raw is the same chunk texts encoded by the same
model in one process, {ENCODE_BATCH} a batch, with the stack stopped, in the same run.

| | chunks/s |
| --- | --- |
| end to end (HTTP, chunking, Postgres, Redis, worker) | {result["ingest_chunks_per_s"]:.1f} |
| raw `encode()` | {result["raw_chunks_per_s"]:.1f} |
| **ratio** | **{result["ratio"]:.2f}** (target 0.85) |

<!-- /bench-ingest -->"""
    path = DOCS / "benchmarks.md"
    text = path.read_text()
    if "<!-- bench-ingest -->" in text:
        head, rest = text.split("<!-- bench-ingest -->", 1)
        text = head + section + rest.split("<!-- /bench-ingest -->", 1)[1]
    else:
        head, rest = text.split("<!-- bench-spaces -->", 1)
        text = head + section + "\n\n<!-- bench-spaces -->" + rest
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=2000)
    args = parser.parse_args()
    docs = corpus(args.docs)
    home = Path(tempfile.mkdtemp(prefix="engram-bench-ingest-"))
    procs, url, database_url, servers = start_stack(home, free_port(), workers=1)
    try:
        seconds = ingest(url, "soak-admin", docs)
        texts = chunk_texts(database_url)
    finally:
        stop_stack(procs, servers)
    raw_seconds = raw_encode(texts)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "documents": len(docs),
        "chunks": len(texts),
        "ingest_seconds": round(seconds, 2),
        "raw_seconds": round(raw_seconds, 2),
        "ingest_chunks_per_s": len(texts) / seconds,
        "raw_chunks_per_s": len(texts) / raw_seconds,
        "ratio": raw_seconds / seconds,
    }
    print(json.dumps(result, indent=2))
    write_docs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
