"""``engram ingest PATH... --user U``: folders of files in, searchable, with progress.

Files are read and reduced to text here (the same rules as the upload route), given ids
derived from user, collection and path, and sent as JSON batches. A file whose document
already holds the same text is skipped without being sent, so a second run sends only what
changed. The run waits until every document is embedded and prints the counts.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx

from models.errors import InvalidInput
from models.extract import HTML, MARKDOWN, file_text

SUFFIXES = (*MARKDOWN, *HTML, ".txt", ".text")
NAMESPACE = uuid.UUID("6c3d1f9e-7f55-4c43-9a3e-5e1a0e4b8f21")  # ids of ingested files
BATCH_FILES = 100
BATCH_BYTES = 4 * 1024 * 1024


class Progress:
    """One line on a terminal, rewritten in place (plain lines elsewhere)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def show(self, label: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        line = f"{label:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if self.live:
            self.out.write("\r" + line)
        elif done == total:
            self.out.write(line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.live:
            self.out.write("\n")


def ingest(
    client: httpx.Client,
    paths: list[Path],
    *,
    user: str,
    collection: str,
    out: TextIO = sys.stderr,
    timeout_seconds: float = 3600,
) -> int:
    """Ingest the files under ``paths`` for ``user``; 0 when every document is ready."""
    progress = Progress(out)
    files = sorted(found_files(paths))
    known = _known_hashes(client, user, collection)
    documents: list[dict[str, Any]] = []
    unchanged = 0
    refused: list[tuple[str, str]] = []
    for shown, (root, path) in enumerate(files, start=1):
        relative = path.relative_to(root).as_posix() if root.is_dir() else path.name
        try:
            text, kind = file_text(path.name, None, path.read_bytes())
        except InvalidInput as exc:
            refused.append((relative, str(exc)))
            continue
        doc_id = str(uuid.uuid5(NAMESPACE, f"{user}\0{collection}\0{relative}"))
        if not text.strip():
            refused.append((relative, "empty"))
        elif known.get(doc_id) == hashlib.sha256(text.encode()).hexdigest():
            unchanged += 1
        else:
            documents.append(
                {"id": doc_id, "title": path.name, "source": relative, "content": text,
                 "format": kind}
            )  # fmt: skip
        progress.show("reading", shown, len(files))
    progress.end()

    batches = []
    sent = 0
    for batch in _batches(documents):
        answer = client.post(
            f"/v1/users/{user}/documents",
            json={"documents": batch, "collection": collection},
        )
        if answer.status_code != 202:
            out.write(f"\nupload refused ({answer.status_code}): {answer.text[:500]}\n")
            return 2
        batches.append(answer.json()["batch_id"])
        sent += len(batch)
        progress.show("uploading", sent, len(documents))
    progress.end()

    counts = _wait(client, user, batches, progress, total=len(documents), timeout=timeout_seconds)
    failed = _failed(client, user, collection) if counts["failed"] else []
    out.write(
        f"ready {counts['ready']}, failed {counts['failed']}, pending {counts['pending']}, "
        f"unchanged {unchanged}, not ingested {len(refused)}\n"
    )
    for name, reason in [*failed, *refused]:
        out.write(f"  {name}: {reason}\n")
    return 0 if counts["failed"] == counts["pending"] == 0 and not refused else 1


def found_files(paths: list[Path]) -> Iterator[tuple[Path, Path]]:
    """(root, file) for each file of a supported type under ``paths``."""
    for root in paths:
        if root.is_file():
            yield root, root
            continue
        for path in root.rglob("*"):
            if path.is_file() and path.suffix.lower() in SUFFIXES:
                yield root, path


def _batches(documents: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for doc in documents:
        length = len(doc["content"].encode())
        if batch and (len(batch) == BATCH_FILES or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += length
    if batch:
        yield batch


def _known_hashes(client: httpx.Client, user: str, collection: str) -> dict[str, str]:
    """The content hash of each document already in the collection, by id."""
    known: dict[str, str] = {}
    cursor = None
    while True:
        params: dict[str, str | int] = {"collection": collection, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        answer = client.get(f"/v1/users/{user}/documents", params=params)
        answer.raise_for_status()
        page = answer.json()
        known |= {d["id"]: d["content_sha256"] for d in page["documents"]}
        cursor = page["next_cursor"]
        if cursor is None:
            return known


def _wait(
    client: httpx.Client,
    user: str,
    batches: list[str],
    progress: Progress,
    *,
    total: int,
    timeout: float,
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = {"pending": 0, "ready": 0, "failed": 0}
        for batch_id in batches:
            answer = client.get(f"/v1/users/{user}/batches/{batch_id}")
            answer.raise_for_status()
            for key in counts:
                counts[key] += answer.json()["counts"][key]
        progress.show("embedding", counts["ready"] + counts["failed"], total)
        if counts["pending"] == 0 or time.monotonic() > deadline:
            progress.end()
            return counts
        time.sleep(0.5)


def _failed(client: httpx.Client, user: str, collection: str) -> list[tuple[str, str]]:
    params: dict[str, str | int] = {"collection": collection, "status": "failed", "limit": 100}
    answer = client.get(f"/v1/users/{user}/documents", params=params)
    answer.raise_for_status()
    return [(d["source"] or d["id"], d["error"] or "failed") for d in answer.json()["documents"]]
