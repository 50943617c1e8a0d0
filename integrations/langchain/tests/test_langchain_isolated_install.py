"""Installed into a bare virtual environment beside the client, as a user of LangChain would
install it, langchain-engram requires the client, langchain-core and msgspec only, and importing it
loads nothing of Engram's server."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent
CLIENT = PACKAGE.parent.parent / "clients" / "python"
# the server's packages and its heavy dependencies: none may be loaded, or even installed
SERVER = ["models", "service", "worker", "migrations"]
HEAVY = ["torch", "sentence_transformers", "transformers", "onnxruntime", "litestar", "psycopg",
         "psycopg_pool", "pgvector", "dramatiq", "redis", "alembic"]  # fmt: skip
PROBE = """
import importlib.metadata, importlib.util, json, sys
import langchain_engram
from langchain_engram import EngramRetriever, EngramVectorStore
store = EngramVectorStore("alice", url="http://engram.invalid", api_key="egm_x")
print(json.dumps({
    "modules": sorted(sys.modules),
    "requires": importlib.metadata.requires("langchain-engram"),
    "findable": [name for name in NAMES if importlib.util.find_spec(name) is not None],
    "file": langchain_engram.__file__,
}))
"""


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new virtual environment holding the package and what it requires."""
    home = tmp_path_factory.mktemp("bare-langchain-venv")
    venv.create(home, with_pip=True, system_site_packages=False)
    python = home / "bin" / "python"
    # one command: engram-client comes from the checkout (the name on PyPI is another project)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(CLIENT),
            str(PACKAGE),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return python


def test_importing_the_installed_package_loads_nothing_of_the_server(
    bare_python: Path, tmp_path: Path
) -> None:
    probe = f"NAMES = {SERVER + HEAVY!r}\n{PROBE}"
    # run outside the repository, so that nothing of it is on the path
    done = subprocess.run(
        [bare_python, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    loaded = found["modules"]
    assert not found["file"].startswith(str(PACKAGE)), "the installed copy, not the checkout"
    assert "engram_client" in loaded and "langchain_core" in loaded
    assert [m for m in loaded if m.split(".")[0] in SERVER + HEAVY] == []
    assert found["findable"] == [], "the bare environment holds nothing of the server"
    names = sorted(r.split(">")[0].split("<")[0] for r in found["requires"])
    assert names == ["engram-client", "langchain-core", "msgspec"]
