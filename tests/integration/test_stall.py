"""Nothing stalls the service: ``/healthz`` answers promptly while the worst request of
each class of the review runs (CPU-heavy parsing, chunking, packing and re-ranking, bad
input, unauthenticated bodies, large imports and exports). ``make bench-stall`` reports
the same figures at the default limits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.api import ADMIN
from support.databases import servers_of_their_own
from support.processes import Servers, start_api, stop_process
from support.worst import watch_each, worst_requests

# The promise is 100 ms; the bound leaves room for a loaded test machine with two cores,
# where the test's own threads and the database share the CPU with the API.
BOUND_MS = 500
DOCUMENT_BYTES = 1_000_000  # chunking costs seconds of CPU at this size: plenty to stall
BODY_BYTES = 4 * 1024 * 1024
CONTENT_CHARS = 32_000


@pytest.fixture(scope="module")
def servers(servers: Servers) -> Iterator[Servers]:
    """A database and a Redis database of the module's own: the work its megabytes leave
    (chunks to embed, imports) is dropped with them, not queued ahead of later tests."""
    with servers_of_their_own(servers, redis=5) as own:
        yield own


@pytest.fixture(scope="module")
def stall_api(servers: Servers) -> Iterator[str]:
    process, url = start_api(
        servers,
        ENGRAM_MAX_DOCUMENT_BYTES=str(DOCUMENT_BYTES),
        ENGRAM_MAX_BODY_BYTES=str(BODY_BYTES),
        ENGRAM_MAX_IMPORT_BYTES=str(20 * BODY_BYTES),
        ENGRAM_RATE_LIMIT_PER_MINUTE="0",
    )
    try:
        yield url
    finally:
        stop_process(process)


def test_healthz_answers_while_the_worst_request_of_each_class_runs(stall_api):
    with httpx.Client(base_url=stall_api, timeout=300) as http:
        requests = worst_requests(
            http,
            ADMIN,
            document_bytes=DOCUMENT_BYTES,
            content_chars=CONTENT_CHARS,
            body_bytes=BODY_BYTES,
            long_memories=60,
        )
        stalls = watch_each(stall_api, http, requests)
    assert {stall.issue_class for stall in stalls} == {1, 2, 5, 6, 7}
    report = "\n".join(
        f"{s.name}: {s.status} in {s.request_seconds:.2f} s; /healthz x{s.probes} "
        f"median {s.median_ms:.1f} ms, worst {s.worst_ms:.1f} ms"
        for s in stalls
    )
    print(report)  # shown by pytest -rP
    assert all(stall.probes >= 3 for stall in stalls), report
    assert all(stall.worst_ms < BOUND_MS for stall in stalls), report
