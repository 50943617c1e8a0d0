"""Observability end to end: /metrics after real traffic (the API's series and the worker's,
through the shared metrics directory), JSON log lines with request ids that follow an item from
the API to the worker, /v1/status and `engram status` against a real API process.

An API process and a worker process run as `engram run` runs them: one PROMETHEUS_MULTIPROC_DIR,
JSON logs captured from stderr. The items go to the openai-1536 space over the local fake
provider, which only this module's worker has: no other worker of the session can take them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from support.api import ADMIN
from support.fake_openai import FakeOpenAI
from support.processes import (
    ADMIN_KEY,
    REPO,
    Servers,
    answers,
    api_env,
    free_port,
    stop_process,
    wait_until,
)

from models.embedding.spaces import MINILM_384, OPENAI_1536
from models.errors import ConfigError
from models.settings import Settings
from service.http.app import create_app

OPENAI_KEY = "sk-test-" + uuid.uuid4().hex
PROVIDER_ENV = {
    "ENGRAM_OPENAI_API_KEY": OPENAI_KEY,
    "ENGRAM_OPENAI_TIMEOUT_SECONDS": "2",
    "ENGRAM_OPENAI_MAX_RETRIES": "3",
    "ENGRAM_OPENAI_BACKOFF_SECONDS": "0.05",
    "ENGRAM_DOCUMENT_SPACE": MINILM_384.name,
}
MEMORIES = "/v1/users/{user_id}/memories"


class Stack(msgspec.Struct):
    url: str
    api_log: Path
    worker_log: Path
    metrics_dir: Path
    fake: FakeOpenAI


def launch(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.ops.cli", command],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def fake(embedder: Any) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(embedder.encode, api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    servers: Servers, fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """`engram api` and `engram worker` sharing a metrics directory, logging JSON."""
    home = tmp_path_factory.mktemp("observability")
    metrics_dir = home / "metrics"
    port = free_port()
    env = {
        **api_env(servers),
        **PROVIDER_ENV,
        "ENGRAM_OPENAI_BASE_URL": fake.url,
        "ENGRAM_PORT": str(port),
        "ENGRAM_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # no sweep re-sends: a test's items are embedded by the worker its message reaches
        "ENGRAM_REQUEUE_AFTER_SECONDS": "300",
        # a queue of its own: the session's worker (no openai-1536 space) would skip them
        "ENGRAM_REDIS_URL": servers.redis_url + ("&" if "?" in servers.redis_url else "?") + "db=6",
    }
    url = f"http://127.0.0.1:{port}"
    stack = Stack(url, home / "api.log", home / "worker.log", metrics_dir, fake)
    worker = launch("worker", env, stack.worker_log)
    api = launch("api", env, stack.api_log)
    try:
        wait_until(lambda: answers(f"{url}/healthz"), timeout=180, what="the API to start")
        wait_until(
            lambda: b"Worker process is ready" in stack.worker_log.read_bytes(),
            timeout=180,
            what="the worker to start",
        )
        yield stack
        fake.clear()
        httpx.delete(f"{url}/v1/spaces/{OPENAI_1536}", headers=ADMIN)
    finally:
        stop_process(api)
        stop_process(worker)


def user_key(url: str) -> tuple[str, dict[str, str]]:
    user = f"obs-{uuid.uuid4().hex[:10]}"
    made = httpx.post(f"{url}/v1/keys", json={"user_id": user}, headers=ADMIN)
    assert made.status_code == 201, made.text
    return user, {"Authorization": f"Bearer {made.json()['key']}"}


def write(
    stack: Stack, user: str, headers: dict[str, str], contents: list[str], request_id: str
) -> httpx.Response:
    """Memories in openai-1536, waiting for the worker; the answer echoes the request id."""
    answer = httpx.post(
        f"{stack.url}/v1/users/{user}/memories",
        json={
            "memories": [{"content": c} for c in contents],
            "space": OPENAI_1536,
            "wait": True,
        },
        headers={**headers, "X-Request-ID": request_id},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == request_id
    return answer


def scrape(
    url: str, headers: dict[str, str] = ADMIN
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}, read with an admin key."""
    answer = httpx.get(f"{url}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(
        v for (n, found), v in samples.items() if n == name and set(labels.items()) <= set(found)
    )


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of a JSON log; a line that is not a JSON object fails the test."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


def test_metrics_show_every_series_after_real_traffic(stack):
    user, headers = user_key(stack.url)
    facts = ["Dana keeps bees on her roof.", "Dana's hives gave 12 kg of honey.", "Dana is 41."]
    write(stack, user, headers, facts, f"obs-write-{uuid.uuid4().hex[:8]}")
    found = httpx.post(
        f"{stack.url}/v1/users/{user}/search",
        json={"query": "who keeps bees?", "k": 2, "space": OPENAI_1536},
        headers=headers,
    )
    assert found.status_code == 200 and len(found.json()["results"]) == 2
    missing = httpx.get(f"{stack.url}/v1/users/{user}/memories/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert httpx.get(f"{stack.url}/v1/no-such-route").status_code == 404

    # the state gauges are cached a few seconds: wait for a scrape that has the new items
    wait_until(
        lambda: value(scrape(stack.url), "engram_items", space=OPENAI_1536, status="ready") >= 3,
        timeout=30,
        what="the ready items in /metrics",
    )
    samples = scrape(stack.url)
    http = "engram_http_request_duration_seconds_count"
    assert value(samples, http, method="POST", route=MEMORIES, status="200") >= 1
    assert value(samples, http, method="GET", route=MEMORIES + "/{memory_id}", status="404") >= 1
    assert value(samples, http, method="POST", route="/v1/users/{user_id}/search", status="200")
    assert value(samples, "engram_http_request_duration_seconds_bucket", route=MEMORIES) >= 1
    assert value(samples, "engram_http_unmatched_requests_total", status="404") >= 1
    routes = {dict(labels)["route"] for name, labels in samples if name == http}
    # the route label is the template, never the raw path: nothing of a user id gets in
    assert not any(user in route for route in routes)
    assert all("{" in r or r in {"/healthz", "/metrics", "/v1/keys"} for r in routes), routes

    # state read at scrape time, for every configured space
    for space in (MINILM_384.name, OPENAI_1536):
        for status in ("pending", "ready", "failed"):
            assert ("engram_items", (("space", space), ("status", status))) in samples
        assert value(samples, "engram_items_oldest_pending_seconds", space=space) >= 0
    for state in ("waiting", "in_flight", "delayed", "dead"):
        assert ("engram_queue_messages", (("queue", "embeddings"), ("state", state))) in samples
    assert value(samples, "engram_state_read_ok", source="database") == 1
    assert value(samples, "engram_state_read_ok", source="broker") == 1

    # recorded in the worker process, shown by the API's /metrics
    assert value(samples, "engram_encode_batch_size_count", space=OPENAI_1536) >= 1
    assert value(samples, "engram_encode_batch_size_sum", space=OPENAI_1536) >= 3
    assert value(samples, "engram_encode_duration_seconds_count", space=OPENAI_1536) >= 1
    assert value(samples, "engram_encode_duration_seconds_sum", space=OPENAI_1536) > 0
    assert value(samples, "engram_embed_items_total", space=OPENAI_1536, outcome="ready") >= 3
    assert any(p.name.startswith("histogram_") for p in stack.metrics_dir.iterdir())


def test_provider_errors_and_retries_are_counted(stack):
    user, headers = user_key(stack.url)
    before = scrape(stack.url)
    stack.fake.fail_next("503")
    stack.fake.fail_next("429", retry_after=0.05)
    write(stack, user, headers, ["Erin sails a red dinghy."], f"obs-retry-{uuid.uuid4().hex[:8]}")
    stack.fake.fail_next("400", message="this input is not allowed")
    refused = f"obs-refused-{uuid.uuid4().hex[:8]}"
    answer = write(stack, user, headers, ["Erin's boat is called Kestrel."], refused)
    assert answer.json()["memories"][0]["status"] == "failed"

    after = scrape(stack.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, space=OPENAI_1536, **labels) - value(
            before, name, space=OPENAI_1536, **labels
        )

    assert grew("engram_provider_errors_total", kind="server_error") >= 1
    assert grew("engram_provider_retries_total", kind="server_error") >= 1
    assert grew("engram_provider_errors_total", kind="rate_limited") >= 1
    assert grew("engram_provider_retries_total", kind="rate_limited") >= 1
    assert grew("engram_provider_errors_total", kind="refused") >= 1
    assert grew("engram_provider_retries_total", kind="refused") == 0  # refusals are final
    assert grew("engram_embed_items_total", outcome="failed") >= 1

    # the worker's line about the failed item names the request that wrote it
    wait_until(
        lambda: any(
            line.get("request_id") == refused and line["level"] == "warning"
            for line in json_lines(stack.worker_log)
        ),
        timeout=10,
        what="the worker's failure line",
    )
    failure = next(
        line
        for line in json_lines(stack.worker_log)
        if line.get("request_id") == refused and line["level"] == "warning"
    )
    assert "failed for good" in failure["message"] and failure["space"] == OPENAI_1536
    assert "this input is not allowed" in failure["message"]


def test_request_id_follows_an_item_from_the_api_to_the_worker(stack):
    user, headers = user_key(stack.url)
    request_id = f"obs-follow-{uuid.uuid4().hex}"
    write(stack, user, headers, ["Farid collects old maps of Lisbon."], request_id)

    # the access line is written once the answer has gone: it may come a moment after it
    wait_until(
        lambda: any(line.get("request_id") == request_id for line in json_lines(stack.api_log)),
        timeout=10,
        what="the API's access line",
    )
    api_lines = json_lines(stack.api_log)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in api_lines)
    access = [line for line in api_lines if line.get("request_id") == request_id]
    assert access, "no API line carries the request id"
    line = access[-1]
    assert line["logger"] == "engram.access" and line["level"] == "info"
    assert (line["method"], line["route"], line["status"]) == ("POST", MEMORIES, 200)
    assert line["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])

    wait_until(
        lambda: any(line.get("request_id") == request_id for line in json_lines(stack.worker_log)),
        timeout=10,
        what="the worker's line for the item",
    )
    worker_lines = json_lines(stack.worker_log)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in worker_lines)
    embedded = [line for line in worker_lines if line.get("request_id") == request_id]
    assert embedded[0]["logger"] == "engram.worker"
    assert embedded[0]["message"] == f"embedded and stored 1 item in {OPENAI_1536}"
    assert (embedded[0]["space"], embedded[0]["items"]) == (OPENAI_1536, 1)


def test_request_ids_are_echoed_or_made(client, new_user):
    user, headers = new_user()
    sent = client.get(f"/v1/users/{user}/memories", headers={**headers, "X-Request-ID": "abc-123"})
    assert sent.headers["x-request-id"] == "abc-123"
    for bad in ("has spaces in it", "x" * 129, 'quote"d'):
        made = client.get(f"/v1/users/{user}/memories", headers={**headers, "X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    unauthenticated = client.get(f"/v1/users/{user}/memories")
    assert unauthenticated.status_code == 401
    assert re.fullmatch(r"[0-9a-f]{32}", unauthenticated.headers["x-request-id"])
    unmatched = client.get("/v1/nothing-here", headers={"X-Request-ID": "lost-1"})
    assert unmatched.status_code == 404 and unmatched.headers["x-request-id"] == "lost-1"
    first, second = client.get("/healthz"), client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_job_rows_keep_the_request_id_of_their_write(client, new_user, db):
    user, headers = new_user()
    answer = client.post(
        f"/v1/users/{user}/memories",
        json={"memories": [{"content": "Gita plays the oud."}]},
        headers={**headers, "X-Request-ID": "keep-me-1"},
    )
    assert answer.status_code == 202
    memory = answer.json()["memories"][0]["id"]
    patched = client.patch(
        f"/v1/users/{user}/memories/{memory}",
        json={"content": "Gita plays the oud and the ney."},
        headers={**headers, "X-Request-ID": "keep-me-2"},
    )
    assert patched.status_code == 200
    rows = db.execute(
        "SELECT request_id FROM embed_state WHERE user_id = %s AND item_id = %s", [user, memory]
    ).fetchall()
    assert rows == [("keep-me-2",)]  # new content: the job now belongs to the PATCH


def test_status_endpoint_is_for_admins(stack):
    _, headers = user_key(stack.url)
    assert httpx.get(f"{stack.url}/v1/status", headers=headers).status_code == 403
    assert httpx.get(f"{stack.url}/v1/status").status_code == 401
    answer = httpx.get(f"{stack.url}/v1/status", params={"top": 3}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    spaces = {s["space"]: s for s in body["spaces"]}
    assert set(spaces) >= {MINILM_384.name, OPENAI_1536}
    openai = spaces[OPENAI_1536]
    assert openai["ready"] >= 1 and openai["embedded_last_5_minutes"] >= 1
    assert openai["embedded_last_5_minutes"] >= openai["embedded_last_minute"]
    assert body["queue"]["queue"] == "embeddings"
    assert len(body["failures"]) <= 3


def test_a_worker_serves_its_own_metrics_when_it_shares_no_directory(
    servers, fake, embedder, tmp_path
):
    """API and worker in separate containers: ENGRAM_WORKER_METRICS_ADDRESS lets Prometheus
    scrape the worker's encode and provider series from the worker itself."""
    port = free_port()
    redis = servers.redis_url + ("&" if "?" in servers.redis_url else "?") + "db=7"
    env = {
        **api_env(servers),
        **PROVIDER_ENV,
        "ENGRAM_OPENAI_BASE_URL": fake.url,
        "ENGRAM_REDIS_URL": redis,  # a queue of its own: no other worker gets these messages
        "ENGRAM_WORKER_METRICS_ADDRESS": f"127.0.0.1:{port}",
    }
    worker_log = tmp_path / "worker.log"
    worker = launch("worker", env, worker_log)
    try:
        wait_until(
            lambda: b"Worker process is ready" in worker_log.read_bytes(),
            timeout=180,
            what="the worker to start",
        )
        settings = Settings.from_env(env)
        with TestClient(create_app(settings, embedders={MINILM_384.name: embedder})) as api:
            user = f"obs-{uuid.uuid4().hex[:10]}"
            answer = api.post(
                f"/v1/users/{user}/memories",
                json={
                    "memories": [{"content": "Jun grows chillies."}],
                    "space": OPENAI_1536,
                    "wait": True,
                },
                headers=ADMIN,
            )
        assert answer.status_code == 200, answer.text
        assert answer.json()["memories"][0]["status"] == "ready"
        served = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert served.status_code == 200
        samples = parse(served.text)
        assert value(samples, "engram_encode_batch_size_count", space=OPENAI_1536) >= 1
        assert value(samples, "engram_embed_items_total", space=OPENAI_1536, outcome="ready") >= 1
    finally:
        stop_process(worker)


def run_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.ops.cli", "status", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")},
    )


def test_engram_status_against_a_real_api(stack):
    user, headers = user_key(stack.url)
    stack.fake.fail_next("400", message="cannot embed this one")
    write(stack, user, headers, ["Hana's kite is yellow."], f"obs-status-{uuid.uuid4().hex[:8]}")

    shown = run_status("--url", stack.url, "--key", ADMIN_KEY)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line.strip()}
    header = rows["space"]
    openai = dict(zip(header[1:6], rows[OPENAI_1536][1:6], strict=True))
    assert int(openai["failed"]) >= 1 and int(openai["ready"]) >= 1
    assert MINILM_384.name in rows
    assert "queue embeddings:" in shown.stdout and "waiting" in shown.stdout
    assert "cannot embed this one" in shown.stdout and "failed" in shown.stdout

    raw = run_status("--url", stack.url, "--key", ADMIN_KEY, "--json")
    assert raw.returncode == 0 and json.loads(raw.stdout)["queue"]["queue"] == "embeddings"

    _, user_headers = user_key(stack.url)
    refused = run_status("--url", stack.url, "--key", user_headers["Authorization"][7:])
    assert refused.returncode == 2 and "403" in refused.stderr

    nobody = run_status("--url", f"http://127.0.0.1:{free_port()}", "--key", ADMIN_KEY)
    assert nobody.returncode == 1 and "unreachable" in nobody.stderr


@pytest.mark.slow
def test_engram_run_shares_the_workers_metrics_with_the_api(tmp_path):
    """Under `engram run`, the worker's encode series reach the API's /metrics, and the
    metrics directory left by an earlier run is emptied at start."""
    stale = tmp_path / "metrics" / "counter_999999.db"
    stale.parent.mkdir()
    stale.write_bytes(b"left by a process of an earlier run")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGRAM_", "PROMETHEUS_"))}
    env |= {"ENGRAM_HOME": str(tmp_path), "ENGRAM_PORT": str(port), "ENGRAM_LOG_FORMAT": "json"}
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "service.ops.cli", "run"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: (
                "Engram is running at" in log.read_text(errors="replace") or run.poll() is not None
            ),
            timeout=240,
            what="engram run to start",
        )
        assert run.poll() is None, log.read_text()[-3000:]
        assert not stale.exists()
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.key').read_text().strip()}"}
        added = httpx.post(
            f"{url}/v1/users/ivan/memories",
            json={"memories": [{"content": "Ivan restores clocks."}], "wait": True},
            headers=admin,
            timeout=120,
        )
        assert added.status_code == 200, added.text
        samples = scrape(url, admin)
        assert value(samples, "engram_encode_batch_size_count", space=MINILM_384.name) >= 1
        assert value(samples, "engram_encode_duration_seconds_count", space=MINILM_384.name) >= 1
        assert value(samples, "engram_http_request_duration_seconds_count", route=MEMORIES) >= 1

        shown = run_status("--url", url, "--key", admin["Authorization"][7:])
        assert shown.returncode == 0, shown.stderr
        assert MINILM_384.name in shown.stdout
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    # every line is JSON: the children's, and the supervisor's greeting too
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line.get("logger") == "engram.access" for line in lines)


def test_log_format_and_worker_metrics_address_are_checked(tmp_path):
    base = {"ENGRAM_HOME": str(tmp_path)}
    assert Settings.from_env(base).logging.format == "text"
    assert Settings.from_env({**base, "ENGRAM_LOG_FORMAT": "JSON"}).logging.format == "json"
    with pytest.raises(ConfigError, match="ENGRAM_LOG_FORMAT"):
        Settings.from_env({**base, "ENGRAM_LOG_FORMAT": "xml"})
    address = {**base, "ENGRAM_WORKER_METRICS_ADDRESS": "0.0.0.0:9464"}
    assert Settings.from_env(address).worker.metrics_address == ("0.0.0.0", 9464)
    with pytest.raises(ConfigError):
        Settings.from_env({**base, "ENGRAM_WORKER_METRICS_ADDRESS": "0.0.0.0:metrics"})
