"""Uploaded files to text: HTML keeps its headings and blocks, drops scripts and styles, and
any markup, however broken, reads as text. No server."""

from __future__ import annotations

import pytest

from models.errors import InvalidInput
from models.ingest.extract import file_text, html_text


def test_html_keeps_headings_and_blocks_and_drops_what_is_not_text():
    html = (
        "<html><head><title>T</title><style>p {}</style></head><body>"
        "<h1>Garden</h1><p>Water the <b>roses</b> at   dawn.</p>"
        "<script>alert(1)</script><ul><li>one</li><li>two</li></ul>Tail &amp; end</body></html>"
    )
    assert html_text(html) == "# Garden\n\nWater the roses at dawn.\n\none\n\ntwo\n\nTail & end"


@pytest.mark.parametrize(
    "markup",
    [
        "<a x" * 5000,  # unclosed tags, quadratic for Python's html.parser
        "<a " * 5000,
        "<![" * 5000,  # an AssertionError in Python's html.parser
        "<!--" * 5000,
        "</" * 5000,
        "<?" * 5000,
        "<div>" * 50_000,  # deep nesting
        "&#" * 5000,
        "<p>\x00</p>",
        "",
        "   ",
    ],
    ids=[
        "unclosed",
        "unclosed-space",
        "marked-section",
        "comment",
        "end",
        "pi",
        "deep",
        "charref",
        "nul",
        "empty",
        "blank",
    ],
)
def test_any_markup_reads_as_text(markup):
    text = html_text(markup)
    assert isinstance(text, str) and "\x00" not in text


def test_files_by_type():
    assert file_text("a.md", None, b"# T\n\nx") == ("# T\n\nx", "markdown")
    assert file_text("a.txt", None, "caf\u00e9".encode()) == ("caf\u00e9", "text")
    assert file_text("page", "text/html; charset=utf-8", b"<p>hi</p>") == ("hi", "markdown")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        file_text("a.txt", None, b"\xff\xfe")
    with pytest.raises(InvalidInput, match="unsupported"):
        file_text("a.pdf", None, b"%PDF")
