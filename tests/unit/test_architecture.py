"""docs/architecture.md's tree is the code's tree: every module of models/, service/ and
worker/ stands in it, where it is, and nothing else does."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "service", "worker")


def documented() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```tree\n", 1)[1].split("```", 1)[0]
    paths: set[str] = set()
    folders: list[str] = []  # the folder at each depth of indentation
    for line in block.splitlines():
        name = line.split()[0]
        depth = (len(line) - len(line.lstrip(" "))) // 2
        del folders[depth:]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            paths.add("/".join([*folders, name]))
    return paths


def modules() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    }


def test_the_documented_tree_is_the_code():
    assert documented() == modules()
