"""The chunker finds sentence and clause separators only near their marks, and Markdown
headings and fences only on lines that begin with theirs: exactly what searching every
position finds, in time that does not hold the interpreter."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.ingest.chunking import _LEVELS, _MARKDOWN_BLOCK, _blocks, _separators

# every character a separator or its marks may look at, and some that none does
ALPHABET = list(".!?\u2026\u3002\uff01\uff1f")  # sentence ends
ALPHABET += list("\"')]\u201d\u2019\u300d\u300f\uff09")  # closing quotes and brackets
ALPHABET += list(",;:\u3001\uff0c\uff1b\uff1a")  # clause marks
ALPHABET += [" ", "\n", "\t", "a", "b", "\u4e00"]


@settings(max_examples=2000, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(ALPHABET), max_size=40),
    bounds=st.tuples(st.integers(0, 40), st.integers(0, 40)),
)
def test_every_level_finds_what_a_search_of_every_position_finds(text, bounds):
    start, end = sorted(min(b, len(text)) for b in bounds)
    for level in _LEVELS:
        expected = [m.span() for m in level.separator.finditer(text, start, end)]
        assert [m.span() for m in _separators(text, start, end, level)] == expected, level


@settings(max_examples=2000, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(["#", "`", "~", " ", "\t", "\n", "a", "x"]), max_size=40)
)
def test_markdown_blocks_are_found_as_a_search_of_every_line_finds_them(text):
    expected = [m.span() for m in _MARKDOWN_BLOCK.finditer(text)]
    assert [m.span() for m in _blocks(text)] == expected
