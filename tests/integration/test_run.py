"""`engram run` as a new user meets it: the README walk-through, Ctrl-C, and a SIGKILL of
everything followed by a restart on the same data; JSON logs, and a start refused for a
space's dimensions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from support.fake_openai import FakeOpenAI
from support.processes import free_port, wait_until

pytestmark = pytest.mark.slow


class EngramRun:
    """One `engram run` process with its own home and port."""

    def __init__(
        self, home: Path, port: int, *, extra_env: dict[str, str] | None = None, wait: bool = True
    ) -> None:
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = home / f"run-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env |= {
            "ENGRAM_HOME": str(home),
            "ENGRAM_PORT": str(port),
            # a killed worker's claim lapses after this long: short, so the test is quick
            "ENGRAM_CLAIM_SECONDS": "5",
            "ENGRAM_SWEEP_INTERVAL_SECONDS": "1",
            "ENGRAM_REQUEUE_AFTER_SECONDS": "2",
            **(extra_env or {}),
        }
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.ops.cli", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self._wait_for("Engram is running at")

    def _wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"engram run did not say {text!r}:\n{self.log.read_text()[-4000:]}"
                )
            time.sleep(0.2)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.home / 'admin.key').read_text().strip()}"}

    def everything(self) -> list[psutil.Process]:
        """The supervisor, its children, and the embedded servers of this home."""
        found = [psutil.Process(self.process.pid)]
        found += found[0].children(recursive=True)
        for proc in psutil.process_iter(["cmdline"]):
            if str(self.home) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        return found


def leftovers(home: Path, port: int) -> list[str]:
    """Processes still holding this home or port."""
    alive = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline:
            alive.append(cmdline)
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            alive.append(f"listener on {port}")
    return alive


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for proc in psutil.process_iter(["cmdline"]):  # never leave servers behind a failed test
        if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
            proc.kill()


def test_run_walkthrough_ctrl_c_and_sigkill_recovery(home):
    port = free_port()
    run = EngramRun(home, port)
    # The README walk-through: a key for alice, memories, a search.
    made = httpx.post(f"{run.url}/v1/keys", json={"user_id": "alice"}, headers=run.admin())
    assert made.status_code == 201
    alice = {"Authorization": f"Bearer {made.json()['key']}"}
    memories = [
        {"content": "Alice drinks her coffee black."},
        {"content": "Alice has a cat named Miso."},
    ]
    added = httpx.post(
        f"{run.url}/v1/users/alice/memories",
        json={"memories": memories, "wait": True},
        headers=alice,
        timeout=60,
    )
    assert added.status_code == 200 and {m["status"] for m in added.json()["memories"]} == {"ready"}
    found = httpx.post(
        f"{run.url}/v1/users/alice/search", json={"query": "coffee", "k": 1}, headers=alice
    )
    assert found.json()["results"][0]["content"] == "Alice drinks her coffee black."
    document = {"title": "notes.md", "content": "# Garden\n\nWater the roses at dawn."}
    sent = httpx.post(
        f"{run.url}/v1/users/alice/documents", json={"documents": [document]}, headers=alice
    )
    assert sent.status_code == 202
    batch = f"{run.url}/v1/users/alice/batches/{sent.json()['batch_id']}"
    wait_until(
        lambda: httpx.get(batch, headers=alice).json()["status"] == "completed",
        what="the README's document to be embedded",
    )
    found = httpx.post(
        f"{run.url}/v1/users/alice/search",
        json={"query": "when to water the roses?", "k": 1, "types": ["chunk"]},
        headers=alice,
    )
    assert "Water the roses at dawn." in found.json()["results"][0]["content"]
    assert httpx.get(f"{run.url}/readyz").status_code == 200
    assert oct((home / "admin.key").stat().st_mode & 0o777) == "0o600"

    # Ctrl-C stops API, worker and embedded servers; nothing is left behind.
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=120) == 0
    assert leftovers(home, port) == []

    # Accept more while running, then SIGKILL everything at once.
    run = EngramRun(home, port)
    late = httpx.post(
        f"{run.url}/v1/users/alice/memories",
        json={"memories": [{"content": "Alice moved to Porto in May."}]},
        headers=alice,
    )
    assert late.status_code in (200, 202)
    for proc in run.everything():
        proc.kill()
    psutil.wait_procs(run.everything() if run.process.poll() is None else [], timeout=30)
    time.sleep(1)

    # The next start comes up on the same data: every accepted memory is there and embedded.
    run = EngramRun(home, port)
    try:
        listed = httpx.get(f"{run.url}/v1/users/alice/memories", headers=alice).json()["memories"]
        assert {m["content"] for m in listed} == {
            "Alice drinks her coffee black.",
            "Alice has a cat named Miso.",
            "Alice moved to Porto in May.",
        }
        # the memory accepted just before the kill is embedded after the restart; until
        # then, three other items (the garden's chunk among them) fill the three results
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            results = httpx.post(
                f"{run.url}/v1/users/alice/search", json={"query": "Porto", "k": 3}, headers=alice
            ).json()["results"]
            if "Alice moved to Porto in May." in {r["content"] for r in results}:
                break
            time.sleep(0.5)
        assert len(results) == 3
        assert results[0]["content"] == "Alice moved to Porto in May."
    finally:
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(timeout=120) == 0
    assert leftovers(home, port) == []


def test_json_logs_hold_nothing_but_json_objects(home):
    """With ENGRAM_LOG_FORMAT=json every line of the output is a JSON object, the
    supervisor's greeting too, from start to stop."""
    port = free_port()
    run = EngramRun(home, port, extra_env={"ENGRAM_LOG_FORMAT": "json"})
    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(timeout=120) == 0
    lines = [json.loads(line) for line in run.log.read_text().splitlines()]
    assert all(isinstance(line, dict) and "message" in line for line in lines)
    greeting = [line for line in lines if line["logger"] == "engram.run"]
    assert any(f"Engram is running at {run.url}" in line["message"] for line in greeting)
    assert leftovers(home, port) == []


def test_a_dimension_mismatch_stops_the_start_at_once_with_one_clear_line(home):
    """A space whose provider answers 512 dimensions for a 1536 table: API and worker
    refuse to start, each in one line that names the three lengths, and `engram run` stops
    everything within seconds of it."""
    with FakeOpenAI(lambda texts: np.ones((len(texts), 384)), api_key="sk-dims") as fake:
        port = free_port()
        env = {
            "ENGRAM_OPENAI_BASE_URL": fake.url,
            "ENGRAM_OPENAI_API_KEY": "sk-dims",
            "ENGRAM_OPENAI_DIMENSIONS": "512",
        }
        run = EngramRun(home, port, extra_env=env, wait=False)
        said_at = None
        deadline = time.monotonic() + 180
        while run.process.poll() is None and time.monotonic() < deadline:
            if said_at is None and "dimension mismatch" in run.log.read_text(errors="replace"):
                said_at = time.monotonic()
            time.sleep(0.1)
        stopped_at = time.monotonic()
    log = run.log.read_text(errors="replace")
    assert run.process.poll() not in (None, 0), log[-4000:]
    assert "Traceback" not in log and "Exception Group" not in log, log[-4000:]
    refusals = [line for line in log.splitlines() if "dimension mismatch" in line]
    assert refusals, log[-4000:]
    for line in refusals:
        assert "configured 1536" in line and "returns 512" in line
        assert "vec_openai_1536.embedding has 1536 dimensions" in line
    # said_at is None only if it exited between two looks: then it was quick, too
    assert said_at is None or stopped_at - said_at < 15, f"{stopped_at - said_at:.1f} s"
    assert leftovers(home, port) == []
