"""Each benchmark's section of docs/benchmarks.md, between its own markers."""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# bench/search.py rewrites everything after its marker: other sections go above it
SEARCH_MARKER = "<!-- bench-search -->"


def write_section(name: str, body: str, *, before: str = SEARCH_MARKER) -> None:
    """Put ``body`` between ``<!-- bench-NAME -->`` and ``<!-- /bench-NAME -->``: in place
    of the old section, else above the ``before`` marker, else at the end."""
    start, end = f"<!-- bench-{name} -->", f"<!-- /bench-{name} -->"
    section = f"{start}\n{body}\n{end}"
    text = PAGE.read_text() if PAGE.exists() else "# Benchmarks\n\n"
    if start in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    elif before in text:
        head, tail = text.split(before, 1)
        text = head.rstrip() + "\n\n" + section + "\n\n" + before + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    PAGE.write_text(text)
