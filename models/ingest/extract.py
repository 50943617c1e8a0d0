"""Uploaded files to text: plain text, Markdown, and HTML (its text, headings kept).

HTML is read by libxml2's HTML parser (lxml), which recovers from any markup and takes time
linear in the input: no upload can make it stall.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from lxml import etree

from models.errors import InvalidInput

MARKDOWN = (".md", ".markdown")
HTML = (".html", ".htm")
TEXT = (".txt", ".text", "")
SUPPORTED = "plain text (.txt), Markdown (.md) or HTML (.html)"


def file_text(filename: str, content_type: str | None, raw: bytes) -> tuple[str, str]:
    """The text of an uploaded file and its format for chunking (``text`` or ``markdown``).

    HTML becomes Markdown-like text: headings as ``#`` lines, blocks as paragraphs, scripts
    and styles dropped. Anything that is not UTF-8 text of a supported kind is InvalidInput.
    """
    suffix = PurePosixPath(filename).suffix.lower()
    media = (content_type or "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{filename}: not UTF-8 text (send {SUPPORTED})") from None
    if suffix in HTML or media == "text/html":
        return html_text(text), "markdown"
    if suffix in MARKDOWN or media == "text/markdown":
        return text, "markdown"
    if suffix in TEXT or media == "text/plain":
        return text, "text"
    raise InvalidInput(f"{filename}: unsupported file type (send {SUPPORTED})")


def html_text(html: str) -> str:
    """The text of an HTML document, headings and blocks kept as Markdown-like lines."""
    if not html.strip():
        return ""
    parser = etree.HTMLParser(target=_TextOf(), recover=True, no_network=True)
    try:
        text: str = etree.fromstring(html, parser)
    except etree.ParserError:  # nothing libxml2 could read as a document
        return ""
    return text


_SKIPPED = {"script", "style", "noscript", "template", "svg", "head"}
_BLOCKS = {
    "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li",
    "ul", "ol", "table", "tr", "blockquote", "pre", "br", "hr", "dd", "dt", "figure",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_SPACE = re.compile(r"\s+")


class _TextOf:
    """A parser target: collects text as the parser meets tags and data, in one pass."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._skipping = 0

    def start(self, tag: str, attrib: Any) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag in _HEADINGS:
            self._parts.append("\n\n" + "#" * _HEADINGS[tag] + " ")
        elif tag in _BLOCKS:
            self._parts.append("\n\n")

    def end(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _HEADINGS or tag in _BLOCKS:
            self._parts.append("\n\n")

    def data(self, data: str) -> None:
        if not self._skipping:
            self._parts.append(_SPACE.sub(" ", data))

    def close(self) -> str:
        paragraphs = "".join(self._parts).split("\n\n")
        kept = [" ".join(p.split()) for p in paragraphs]
        return "\n\n".join(p for p in kept if p and p.strip("# "))
