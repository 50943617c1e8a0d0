"""The worst single request of each class of issue 19's review, and a watch on ``/healthz``
while each one runs: the promise is that ``/healthz`` answers within 100 ms meanwhile.

``worst_requests`` prepares the users and bodies first (imports with their vectors, so no
model or worker is needed) and answers the requests as callables; ``HealthWatch`` asks
``/healthz`` over and over from a thread of its own. tests/integration/test_stall.py holds
the figures under a bound, bench/stall.py reports them.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median

import httpx
import numpy as np

WORDS = [
    *("coffee", "garden", "river", "lamp", "violin"),
    *("basil", "window", "autumn", "letter", "harbour"),
]


@dataclass(frozen=True)
class Worst:
    """One request: what it is, the class of the review it belongs to, how to send it and
    the statuses it may answer (anything else, a 5xx above all, is a failure)."""

    name: str
    issue_class: int
    send: Callable[[httpx.Client], httpx.Response]
    expect: frozenset[int]


def new_user(http: httpx.Client, admin: dict[str, str], prefix: str) -> tuple[str, dict[str, str]]:
    user = f"{prefix}-{uuid.uuid4().hex[:8]}"
    made = http.post("/v1/keys", json={"user_id": user}, headers=admin)
    made.raise_for_status()
    return user, {"Authorization": f"Bearer {made.json()['key']}"}


def export_lines(user: str, contents: list[str], *, seed: int = 7) -> bytes:
    """An export of ``user`` holding ``contents`` as memories, each with a random unit vector
    in minilm-384: importing it needs no model."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = [
        {"type": "header", "format": "engram.export", "version": 1, "user_id": user,
         "exported_at": datetime.now(UTC).isoformat(),
         "spaces": [{"name": "minilm-384", "dims": 384, "provider": "sentence-transformers",
                     "model": "sentence-transformers/all-MiniLM-L6-v2"}]},
    ]  # fmt: skip
    for content in contents:
        memory_id = str(uuid.uuid4())
        vector = rng.normal(size=384)
        vector /= np.linalg.norm(vector)
        rows.append({"type": "memory", "id": memory_id, "content": content,
                     "space": "minilm-384"})  # fmt: skip
        rows.append({"type": "vector", "item_id": memory_id, "kind": "memory",
                     "space": "minilm-384",
                     "content_sha256": hashlib.sha256(content.encode()).hexdigest(),
                     "embedding": [round(float(x), 7) for x in vector]})  # fmt: skip
    rows.append({"type": "end", "counts": {"memory": len(contents), "vector": len(contents)}})
    return "\n".join(json.dumps(row) for row in rows).encode()


def import_user(
    http: httpx.Client, admin: dict[str, str], contents: list[str], prefix: str = "big"
) -> tuple[str, dict[str, str]]:
    """A new user holding ``contents`` as memories with their vectors."""
    user, headers = new_user(http, admin, prefix)
    imported = send_import(http, user, headers, export_lines(user, contents))
    assert imported.status_code == 200, imported.text
    return user, headers


def send_import(
    http: httpx.Client, user: str, headers: dict[str, str], body: bytes
) -> httpx.Response:
    return http.post(
        f"/v1/users/{user}/import",
        content=body,
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )


def long_text(chars: int, rng: random.Random) -> str:
    """Words with no sentence or paragraph break: the costliest text to chunk."""
    words: list[str] = []
    size = 0
    while size < chars:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    return " ".join(words)[:chars]


def worst_requests(
    http: httpx.Client,
    admin: dict[str, str],
    *,
    document_bytes: int,
    content_chars: int,
    body_bytes: int,
    long_memories: int = 150,
) -> list[Worst]:
    """The requests, with their users made and filled: documents as large as
    ``document_bytes``, memories as long as ``content_chars``, bodies of ``body_bytes``."""
    rng = random.Random(19)
    contents = [f"{n} " + long_text(content_chars - 8, rng) for n in range(long_memories)]
    big, big_headers = import_user(http, admin, contents, "long")
    writer, writer_headers = new_user(http, admin, "writer")
    import_body = export_lines("importer", contents, seed=8)
    unclosed = ("<div><span><p><b>" + "x" * 4) * (min(document_bytes, 80_000) // 21)
    huge_document = long_text(document_bytes - 1, rng)
    nested = "[" * (body_bytes - 1)
    three_thousand_words = " ".join(rng.choice(WORDS) + str(n) for n in range(3000))
    digits = int("9" * 400)

    def on(user: str, path: str) -> str:
        return f"/v1/users/{user}{path}"

    def search(body: dict[str, object]) -> httpx.Response:
        return http.post(on(big, "/search"), json=body, headers=big_headers)

    return [
        Worst(
            "HTML upload of unclosed tags",
            1,
            lambda http: http.post(
                on(writer, "/documents/files"),
                files={"files": ("tags.html", unclosed.encode(), "text/html")},
                headers=writer_headers,
            ),
            frozenset({202}),
        ),
        Worst(
            f"document of {document_bytes:,} bytes with no break",
            1,
            lambda http: http.post(
                on(writer, "/documents"),
                json={"documents": [{"content": huge_document}]},
                headers=writer_headers,
            ),
            frozenset({202}),
        ),
        Worst(
            f"context over {long_memories} memories of {content_chars:,} characters",
            1,
            lambda http: http.post(
                on(big, "/context"),
                json={"query": "coffee", "max_tokens": 64, "k": 100},
                headers=big_headers,
            ),
            frozenset({200}),
        ),
        Worst(
            "search k=100 with diversity",
            1,
            lambda http: search({"query": "violin harbour", "k": 100, "diversity": 0.7}),
            frozenset({200}),
        ),
        Worst(
            "hybrid search of 3,000 words",
            1,
            lambda http: search({"query": three_thousand_words, "k": 100, "mode": "hybrid"}),
            frozenset({200}),
        ),
        Worst(
            f"JSON nested {body_bytes - 1:,} deep",
            2,
            lambda http: http.post(
                on(big, "/search"),
                content=nested,
                headers={**big_headers, "Content-Type": "application/json"},
            ),
            frozenset({400}),
        ),
        Worst(
            "filter on a 400-digit number",
            2,
            lambda http: search(
                {"vector": [0.1] * 384, "k": 100, "filter": {"n": {"$gt": digits}}}
            ),
            frozenset({200}),
        ),
        Worst(
            f"import of {long_memories} memories of {content_chars:,} characters",
            6,
            lambda http: send_import(http, *new_user(http, admin, "importer"), import_body),
            frozenset({200}),
        ),
        Worst(
            f"export of {long_memories} memories of {content_chars:,} characters",
            7,
            lambda http: http.get(on(big, "/export"), headers=big_headers),
            frozenset({200}),
        ),
        Worst(
            "body of the largest size with a bad key",
            5,
            lambda http: http.post(
                on(big, "/search"),
                content=nested,
                headers={"Authorization": "Bearer nope", "Content-Type": "application/json"},
            ),
            # 429 once the address has failed too often this minute: last, so that no
            # other request comes from an address over its limit
            frozenset({401, 429}),
        ),
    ]


def probe(host: str, port: int) -> int:
    """The status of one ``GET /healthz`` on a new connection (0: no answer within 30 s).
    A bare socket: an HTTP client's own set-up would weigh in the figure."""
    try:
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(
                f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            head = sock.recv(64)
            while sock.recv(4096):  # read to the end: the answer is whole
                pass
    except OSError:
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


@dataclass
class HealthWatch:
    """Asks ``/healthz`` over and over (each on a new connection, as a probe would) and keeps
    (when asked, seconds to answer, status) for each."""

    url: str
    pause: float = 0.01
    answers: list[tuple[float, float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthWatch:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _watch(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        while not self._stop.is_set():
            asked = time.perf_counter()
            status = probe(host, int(port))
            self.answers.append((asked, time.perf_counter() - asked, status))
            time.sleep(self.pause)

    def between(self, start: float, end: float) -> list[float]:
        """Seconds each ``/healthz`` that was waiting during [start, end] took (a failed
        one: infinity)."""
        return [
            seconds if status == 200 else float("inf")
            for asked, seconds, status in list(self.answers)
            if asked <= end and asked + seconds >= start
        ]


@dataclass(frozen=True)
class Stall:
    """What ``/healthz`` did while one request ran."""

    name: str
    issue_class: int
    status: int
    request_seconds: float
    probes: int
    median_ms: float
    worst_ms: float


def watch_each(
    url: str, http: httpx.Client, requests: list[Worst], *, at_least: float = 0.5
) -> list[Stall]:
    """Sends each request alone under a ``HealthWatch``, again and again until it has run
    ``at_least`` seconds (a quick request once would meet no probe): the probes that
    waited meanwhile. A status outside the request's ``expect`` stops with an error."""
    stalls = []
    with HealthWatch(url) as watch:
        time.sleep(0.5)
        for request in requests:
            started = time.perf_counter()
            took: list[float] = []
            while not took or time.perf_counter() - started < at_least:
                sent = time.perf_counter()
                answer = request.send(http)
                took.append(time.perf_counter() - sent)
                if answer.status_code not in request.expect:
                    raise AssertionError(
                        f"{request.name}: {answer.status_code} {answer.text[:300]}"
                    )
            ended = time.perf_counter()
            time.sleep(0.05)  # the last probe that waited has answered
            probes = watch.between(started, ended)
            stalls.append(
                Stall(
                    request.name,
                    request.issue_class,
                    answer.status_code,
                    median(took),
                    len(probes),
                    median(probes) * 1000,
                    max(probes) * 1000,
                )
            )
            time.sleep(0.2)
    return stalls
