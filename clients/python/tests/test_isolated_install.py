"""Installed alone into a bare virtual environment, the client works without the server:
it requires httpx and msgspec only, and importing it loads nothing of Engram's server."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parent.parent
# the server's packages and its heavy dependencies: none may be loaded, or even installed
SERVER = ["models", "service", "worker", "migrations"]
HEAVY = ["torch", "sentence_transformers", "transformers", "onnxruntime", "litestar", "psycopg",
         "psycopg_pool", "pgvector", "dramatiq", "redis", "numpy", "alembic"]  # fmt: skip
PROBE = """
import importlib.metadata, importlib.util, json, sys
import engram_client
from engram_client import AsyncEngram, Engram, types
print(json.dumps({
    "modules": sorted(sys.modules),
    "requires": importlib.metadata.requires("engram-client"),
    "findable": [name for name in NAMES if importlib.util.find_spec(name) is not None],
    "file": engram_client.__file__,
}))
"""


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new virtual environment holding the client and what it requires."""
    home = tmp_path_factory.mktemp("bare-venv")
    venv.create(home, with_pip=True, system_site_packages=False)
    python = home / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(CLIENT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return python


def test_importing_the_installed_client_loads_nothing_of_the_server(bare_python, tmp_path):
    probe = f"NAMES = {SERVER + HEAVY!r}\n{PROBE}"
    # run outside the repository, so that nothing of it is on the path
    done = subprocess.run(
        [bare_python, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    loaded = found["modules"]
    assert not found["file"].startswith(str(CLIENT)), "the installed copy, not the checkout"
    assert "httpx" in loaded and "msgspec" in loaded
    assert [m for m in loaded if m.split(".")[0] in SERVER + HEAVY] == []
    assert found["findable"] == [], "the bare environment holds nothing of the server"
    assert sorted(r.split(">")[0].split("<")[0] for r in found["requires"]) == ["httpx", "msgspec"]


def test_the_installed_client_answers_over_a_transport_of_its_own(bare_python, tmp_path):
    script = """
import httpx
from engram_client import Engram, NotFoundError

def handler(request):
    if request.url.path == "/healthz":
        return httpx.Response(200, json={"status": "ok"})
    return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such"}})

with Engram("http://engram.test", "key", transport=httpx.MockTransport(handler)) as engram:
    assert engram.healthz().status == "ok"
    try:
        engram.get_memory("alice", "00000000-0000-0000-0000-000000000000")
    except NotFoundError as exc:
        print(exc.status, exc.code)
"""
    done = subprocess.run(
        [bare_python, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["404", "not_found"]
