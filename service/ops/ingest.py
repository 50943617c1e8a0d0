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
from typing import TextIO

from engram_client import BatchCounts, DocumentIn, Engram

from models.errors import InvalidInput
from models.ingest.extract import HTML, MARKDOWN, file_text

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
    client: Engram,
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
    documents: list[DocumentIn] = []
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
                DocumentIn(id=doc_id, title=path.name, source=relative, content=text, format=kind)
            )
        progress.show("reading", shown, len(files))
    progress.end()

    batches = []
    sent = 0
    for batch in _batches(documents):
        batches.append(client.add_documents(user, batch, collection=collection).batch_id)
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


def _batches(documents: list[DocumentIn]) -> Iterator[list[DocumentIn]]:
    batch: list[DocumentIn] = []
    size = 0
    for doc in documents:
        length = len(doc.content.encode())
        if batch and (len(batch) == BATCH_FILES or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += length
    if batch:
        yield batch


def _known_hashes(client: Engram, user: str, collection: str) -> dict[str, str]:
    """The content hash of each document already in the collection, by id."""
    found = client.list_documents(user, collection=collection)
    return {str(d.id): d.content_sha256 for d in found}


def _wait(
    client: Engram,
    user: str,
    batches: list[uuid.UUID],
    progress: Progress,
    *,
    total: int,
    timeout: float,
) -> dict[str, int]:
    """Counts over ``batches`` once none is in progress (or at the deadline).

    Workers take batches roughly in the order they were sent, so each poll asks for the
    oldest unfinished batch only (and, once it is done, the next ones at once): one small
    request a second however many batches there are, not a load on the service that
    would slow the embedding it waits for. A finished batch's counts are kept.
    """
    deadline = time.monotonic() + timeout
    totals = {"pending": 0, "ready": 0, "failed": 0}

    def add(counts: BatchCounts) -> None:
        for key in totals:
            totals[key] += getattr(counts, key)

    waiting = list(batches)
    while waiting:
        counts = client.get_batch(user, waiting[0]).counts
        if not counts.pending:
            add(counts)
            waiting.pop(0)
            continue
        done = totals["ready"] + totals["failed"] + counts.ready + counts.failed
        progress.show("embedding", done, total)
        if time.monotonic() > deadline:
            for batch_id in waiting:  # give up waiting: count them as they are
                add(client.get_batch(user, batch_id).counts)
            break
        time.sleep(1.0)
    progress.show("embedding", totals["ready"] + totals["failed"], total)
    progress.end()
    return totals


def _failed(client: Engram, user: str, collection: str) -> list[tuple[str, str]]:
    failed = client.list_documents(user, collection=collection, status="failed")
    return [(d.source or str(d.id), d.error or "failed") for d in failed]
