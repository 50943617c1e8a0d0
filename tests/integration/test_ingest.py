"""``engram ingest``: a folder in, against a running API and worker, run twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.api import ADMIN, search
from support.processes import ADMIN_KEY, REPO

pytestmark = pytest.mark.usefixtures("worker")


def corpus(root: Path, count: int) -> None:
    (root / "notes" / "deep").mkdir(parents=True)
    for i in range(count):
        (root / "notes" / f"note-{i:03}.txt").write_text(f"Note {i}: bin day {i} is a Tuesday.")
    (root / "notes" / "deep" / "guide.md").write_text("# Bikes\n\nPump the tyres every week.")
    (root / "notes" / "deep" / "boiler.html").write_text(
        "<h1>Boiler</h1><p>Bleed the radiators in autumn.</p>"
    )
    (root / "notes" / "photo.png").write_bytes(b"\x89PNG not a document")  # not picked up
    (root / "notes" / "broken.txt").write_bytes("caf\xe9".encode("latin-1"))  # not UTF-8


def ingest(
    api_url: str, root: Path, user: str, key: str = ADMIN_KEY
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENGRAM_URL": api_url, "ENGRAM_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "service.ops.cli", "ingest", str(root / "notes"), "--user", user,
         "--collection", "home"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_folder_is_searchable_after_one_ingest_and_a_second_run_sends_nothing(
    api_url, tmp_path, client, db
):
    user = "ingest-user"
    corpus(tmp_path, 30)
    first = ingest(api_url, tmp_path, user)
    assert "ready 32, failed 0, pending 0, unchanged 0, not ingested 1" in first.stderr, (
        first.stderr
    )
    assert "broken.txt: " in first.stderr and "not UTF-8" in first.stderr
    assert first.returncode == 1  # one file could not be ingested
    found = search(client, user, ADMIN, query="when do I bleed the radiators?", k=1)
    assert "Bleed the radiators" in found[0]["content"]
    jobs = db.execute("SELECT count(*) FROM embed_state WHERE user_id = %s", [user]).fetchone()

    (tmp_path / "notes" / "note-000.txt").write_text("Note 0: the recycling goes out Friday.")
    second = ingest(api_url, tmp_path, user)
    assert "ready 1, failed 0, pending 0, unchanged 31, not ingested 1" in second.stderr, (
        second.stderr
    )
    after = db.execute("SELECT count(*) FROM embed_state WHERE user_id = %s", [user]).fetchone()
    assert after == jobs  # the changed file replaced its chunk; nothing else was re-embedded
    found = search(client, user, ADMIN, query="when does the recycling go out?", k=1)
    assert found[0]["content"] == "Note 0: the recycling goes out Friday."


def test_a_refused_key_is_one_clear_line_not_a_trace(api_url, tmp_path):
    corpus(tmp_path, 1)
    refused = ingest(api_url, tmp_path, "ingest-user-2", key="egm_0000000000000000_wrong")
    assert refused.returncode == 2
    assert "engram ingest: 401 unauthenticated" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
