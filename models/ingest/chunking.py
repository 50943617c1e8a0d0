"""Split documents into chunks that fit an embedding model's input, by structure first.

A chunk never counts more than ``spec.max_tokens`` with the counter it was cut for: the model
would silently drop the rest. Splits prefer, in order, Markdown headings (``markdown=True``),
blank lines, line breaks, sentence ends, whitespace, commas and the like (for text without
spaces: CJK, minified code), and last single characters; the pieces are then merged greedily up
to the limit. Every chunk is a slice of the original text: ``content == text[start:end]`` always
holds, with no surrounding whitespace. With overlap, a chunk's slice begins inside the previous
chunk (at a word start), so neighbouring ranges overlap.

In Markdown mode every ATX heading (``#`` to ``######``, outside fenced code) starts a chunk, and
a section never shares a chunk with the next one, except that a heading with no text of its own
joins the section that follows. Nothing is repeated across a heading: the tail overlap stops there.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from itertools import chain, islice, pairwise
from typing import NamedTuple

import msgspec

from models.ingest.tokens import TokenCounter


class _Level(NamedTuple):
    """A kind of separator. A separator whose pattern looks behind for a mark can begin only
    right after one (or after one and a closing quote): ``marks`` finds those, so that a
    long text without any is not searched position by position, in one call that holds the
    interpreter for as long as it takes (half a second for 5 MB of words)."""

    separator: re.Pattern[str]
    marks: re.Pattern[str] | None = None


_PARAGRAPHS = _Level(re.compile(r"\n\s*\n"))
_LINES = _Level(re.compile(r"\n"))
_SENTENCES = _Level(
    re.compile(  # an end mark, maybe a closing quote or bracket, then the cut
        r"(?<=[.!?\u2026])\s+|(?<=[.!?\u2026][\"'\u201d\u2019)\]])\s+"  # Latin: a space follows
        r"|(?<=[\u3002\uff01\uff1f])(?![\u300d\u300f\u201d\u2019\uff09])\s*"  # CJK: none needed
        r"|(?<=[\u3002\uff01\uff1f][\u300d\u300f\u201d\u2019\uff09])\s*"
    ),
    re.compile(r"[.!?\u2026\u3002\uff01\uff1f]"),
)
_WORDS = _Level(re.compile(r"\s+"))
_CLAUSES = _Level(  # for CJK or minified code
    re.compile(r"(?<=[,;:\u3001\uff0c\uff1b\uff1a])"), re.compile(r"[,;:\u3001\uff0c\uff1b\uff1a]")
)
_LEVELS = (_PARAGRAPHS, _LINES, _SENTENCES, _WORDS, _CLAUSES)
_WORD_START = re.compile(r"(?<!\S)\S")
_BLOCK_MARKS = re.compile(r"[#`~]")  # a heading or a fence line holds one of these
_MARKDOWN_BLOCK = re.compile(
    r"^ {0,3}(?:(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)|#{1,6}(?:[ \t]|$))", re.MULTILINE
)
_MAX_MERGE_ROUNDS = 4  # recounts spent growing one chunk past a pessimistic estimate
_CHARS_PER_TOKEN_CUTOFF = 32  # longer spans are split without being counted first
_CLUSTER_BACKOFF = 32  # how far a hard split steps back to keep a grapheme cluster whole
_GROUP = 2048  # parts of one level merged at a time
_REMEMBERED_CHARS = 32  # spans this short have their counts remembered...
_REMEMBERED_SPANS = 65_536  # ...this many at most


class ChunkSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How large chunks may be, in the tokens of the counter they are cut for, and in
    characters (a tokenizer may read a long unbroken word as one unknown token)."""

    max_tokens: int  # hard limit per chunk, in the counter's tokens
    overlap_tokens: int  # tokens of the previous chunk's tail repeated at the start of the next
    max_chars: int | None = None  # hard limit per chunk, overlap included (None: none)

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError("a chunk spec needs max_tokens >= 1 and 0 <= overlap < max_tokens")
        if self.max_chars is not None and self.max_chars < 1:
            raise ValueError("a chunk spec needs max_chars >= 1")


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of a document; ``content == text[start:end]`` of the text it came from."""

    index: int  # 0-based order in the document
    content: str
    tokens: int  # as counted by the counter
    start: int  # character offsets into the original text; ranges overlap when overlap is on
    end: int


def split_text(
    text: str, spec: ChunkSpec, count_tokens: TokenCounter, *, markdown: bool = False
) -> list[Chunk]:
    """Chunks of ``text``, each counting at most ``spec.max_tokens`` and ``spec.max_chars``
    characters; [] for blank text.

    Raises ``ValueError`` when a single character counts more than ``spec.max_tokens``.
    """
    splitter = _Splitter(text, spec, count_tokens)
    sections = _markdown_sections(text) if markdown else [_strip(text, 0, len(text))]
    pieces = [
        piece for start, end in sections if start < end for piece in splitter.split(start, end)
    ]
    return [
        Chunk(index=i, content=text[p.start : p.end], tokens=p.tokens, start=p.start, end=p.end)
        for i, p in enumerate(pieces)
    ]


class _Piece(NamedTuple):
    start: int
    end: int
    tokens: int  # the exact count of text[start:end]


class _Splitter:
    """The state of one ``split_text`` call: the text, the counter and the budgets."""

    def __init__(self, text: str, spec: ChunkSpec, count_tokens: TokenCounter) -> None:
        self.text = text
        self.count = count_tokens
        self.max_tokens = spec.max_tokens
        self.overlap = spec.overlap_tokens
        self.budget = spec.max_tokens - spec.overlap_tokens  # for a chunk before its overlap
        self.max_chars = self.budget * _CHARS_PER_TOKEN_CUTOFF
        self.char_limit = spec.max_chars or len(text) + 1  # no chunk is longer, ever
        self.empty = count_tokens("")  # what every count includes: special tokens
        self._gaps: dict[str, int] = {}
        self._words: dict[str, int] = {}  # counts of short spans (words, mostly)

    def split(self, start: int, end: int) -> list[_Piece]:
        """The chunks of one stripped span, overlap included."""
        pieces = self._pieces(start, end, 0)
        if self.overlap:
            for i in range(1, len(pieces)):
                pieces[i] = self._overlapped(pieces[i - 1], pieces[i])
        return pieces

    def _pieces(self, start: int, end: int, level: int) -> list[_Piece]:
        short = end - start <= min(self.max_chars, self.char_limit)
        tokens = self._count(start, end) if short else None
        if tokens is not None and tokens <= self.budget:
            return [_Piece(start, end, tokens)]
        while level < len(_LEVELS):
            parts = _parts(self.text, start, end, _LEVELS[level])
            level += 1
            head = list(islice(parts, 2))
            if len(head) > 1:
                return self._merge_all(chain(head, parts), level)
        return self._hard_split(start, end)

    def _merge_all(self, parts: Iterator[tuple[int, int]], level: int) -> list[_Piece]:
        """The parts' pieces merged, ``_GROUP`` parts at a time: a megabyte of words is never
        all in memory as pieces at once. A group's last chunk, which may still grow, is
        carried into the next group as its first unit."""
        merged: list[_Piece] = []
        carried: list[_Piece] = []
        while group := list(islice(parts, _GROUP)):
            units = carried + [p for a, b in group for p in self._pieces(a, b, level)]
            chunks = self._merge(units)
            merged += chunks[:-1]
            carried = chunks[-1:]
        return merged + carried

    def _merge(self, units: list[_Piece]) -> list[_Piece]:
        """Greedy merging: grow by estimate (counts add up), then confirm with one real count."""
        merged = []
        i = 0
        while i < len(units):
            last, tokens = i, units[i].tokens
            for _ in range(_MAX_MERGE_ROUNDS):
                reach = self._reach(units, i, last, tokens)
                if reach == last:
                    break
                actual = self._count(units[i].start, units[reach].end)
                if actual > self.budget:
                    last, tokens = self._shrink(units, i, last, tokens, reach)
                    break
                last, tokens = reach, actual
            merged.append(_Piece(units[i].start, units[last].end, tokens))
            i = last + 1
        return merged

    def _reach(self, units: list[_Piece], first: int, last: int, tokens: int) -> int:
        """The furthest unit the chunk from ``first`` to ``last`` may grow to: by estimate
        in tokens, exactly in characters."""
        while last + 1 < len(units):
            if units[last + 1].end - units[first].start > self.char_limit:
                break
            gap = self._gap_tokens(units[last].end, units[last + 1].start)
            tokens += gap + units[last + 1].tokens - self.empty
            if tokens > self.budget:
                break
            last += 1
        return last

    def _shrink(
        self, units: list[_Piece], first: int, fits: int, tokens: int, too_far: int
    ) -> tuple[int, int]:
        """Bisect between a last unit that fits and one that does not."""
        while too_far - fits > 1:
            middle = (fits + too_far) // 2
            count = self._count(units[first].start, units[middle].end)
            if count <= self.budget:
                fits, tokens = middle, count
            else:
                too_far = middle
        return fits, tokens

    def _hard_split(self, start: int, end: int) -> list[_Piece]:
        """Cut a span with no usable separator into the longest prefixes that fit."""
        pieces = []
        guess = max(self.budget, 1)
        while start < end:
            piece = self._longest_prefix(start, end, guess)
            pieces.append(piece)
            guess = piece.end - start
            start = _strip(self.text, piece.end, end)[0]
        return pieces

    def _longest_prefix(self, start: int, end: int, guess: int) -> _Piece:
        end = min(end, start + self.char_limit)
        best = _Piece(start, start + 1, self._count(start, start + 1))
        if best.tokens > self.max_tokens:
            raise ValueError(f"one character counts {best.tokens} tokens, over the chunk limit")
        if best.tokens > self.budget:
            return best  # nothing shorter exists; it still fits the hard limit
        fails = end + 1
        probe, step = max(best.end + 1, min(end, start + guess)), max(1, guess // 32)
        while best.end < end:  # gallop up from the previous piece's length
            count = self._count(start, probe)
            if count > self.budget:
                fails = probe
                break
            best = _Piece(start, probe, count)
            probe, step = min(end, probe + step), step * 2
        while fails - best.end > max(1, (fails - start) // 32):  # bisect, close enough
            middle = (best.end + fails) // 2
            count = self._count(start, middle)
            if count <= self.budget:
                best = _Piece(start, middle, count)
            else:
                fails = middle
        return best if best.end == end else self._whole_clusters(best)

    def _whole_clusters(self, piece: _Piece) -> _Piece:
        """Step a cut back out of a grapheme cluster (accents, ZWJ emoji) when one is near."""
        cut = piece.end
        floor = max(piece.start + 1, cut - _CLUSTER_BACKOFF)
        while cut > floor and _joins(self.text, cut):
            cut -= 1
        if cut == piece.end or _joins(self.text, cut):
            return piece
        count = self._count(piece.start, cut)
        return _Piece(piece.start, cut, count) if count <= self.budget else piece

    def _overlapped(self, previous: _Piece, piece: _Piece) -> _Piece:
        """``piece`` extended back over the longest word-aligned tail of ``previous`` that fits."""
        starts = [m.start() for m in _WORD_START.finditer(self.text, previous.start, previous.end)]
        starts = starts[-(self.overlap + 1) :]  # a word is at least one token
        starts = [s for s in starts if piece.end - s <= self.char_limit]
        lo, hi = 0, len(starts)
        while lo < hi:  # the longest tail within overlap_tokens
            middle = (lo + hi) // 2
            if self._count(starts[middle], previous.end) - self.empty <= self.overlap:
                hi = middle
            else:
                lo = middle + 1
        best, hi = piece, len(starts)
        middle = lo  # most often the longest such tail also keeps the chunk within the limit
        while lo < hi:
            count = self._count(starts[middle], piece.end)
            if count <= self.max_tokens:
                best, hi = _Piece(starts[middle], piece.end, count), middle
            else:
                lo = middle + 1
            middle = (lo + hi) // 2
        return best

    def _gap_tokens(self, start: int, end: int) -> int:
        gap = self.text[start:end]
        if gap not in self._gaps:
            self._gaps[gap] = self.count(gap) - self.empty
        return self._gaps[gap]

    def _count(self, start: int, end: int) -> int:
        span = self.text[start:end]
        if end - start > _REMEMBERED_CHARS:
            return self.count(span)
        tokens = self._words.get(span)
        if tokens is None:  # words recur: counted once each
            if len(self._words) >= _REMEMBERED_SPANS:
                self._words.clear()
            tokens = self._words[span] = self.count(span)
        return tokens


def _parts(text: str, start: int, end: int, level: _Level) -> Iterator[tuple[int, int]]:
    """The stripped, non-empty pieces of ``text[start:end]`` between separators."""
    for gap in _separators(text, start, end, level):
        a, b = _strip(text, start, gap.start())
        if a < b:
            yield a, b
        start = gap.end()
    a, b = _strip(text, start, end)
    if a < b:
        yield a, b


def _separators(text: str, start: int, end: int, level: _Level) -> Iterator[re.Match[str]]:
    """What ``level.separator.finditer(text, start, end)`` finds, looked for only where a
    separator can begin when the level has marks: one and two characters after each."""
    if level.marks is None:
        yield from level.separator.finditer(text, start, end)
        return
    after = start  # where the next separator may begin: past the last one
    for mark in level.marks.finditer(text, max(0, start - 2), end):
        for begin in (mark.end(), mark.end() + 1):
            if begin < after or begin > end:
                continue
            found = level.separator.match(text, begin, end)
            if found is None:
                continue
            yield found
            # an empty separator (CJK, a clause) is followed by none at the same place
            after = found.end() if found.end() > begin else begin + 1
            break


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _joins(text: str, cut: int) -> bool:
    """Whether a cut before ``text[cut]`` would break a grapheme cluster (approximately)."""
    after = text[cut]
    return (
        text[cut - 1] == "\u200d"
        or after == "\u200d"
        or unicodedata.category(after) in ("Mn", "Mc", "Me")
        or "\ufe00" <= after <= "\ufe0f"
        or "\U0001f3fb" <= after <= "\U0001f3ff"
    )


def _markdown_sections(text: str) -> list[tuple[int, int]]:
    """Stripped spans that each begin at a heading (but the first); bare headings join the next."""
    starts = _heading_starts(text)
    headings = set(starts)
    sections: list[tuple[int, int]] = []
    pending: int | None = None  # the start of bare headings waiting for a section with text
    for cut, next_cut in pairwise(sorted({0, *starts, len(text)})):
        start, end = _strip(text, cut, next_cut)
        if start == end:
            continue
        bare = cut in headings and text.find("\n", start, end) == -1
        start = start if pending is None else pending
        pending = start if bare else None
        if not bare:
            sections.append((start, end))
    if pending is not None:
        sections.append(_strip(text, pending, len(text)))
    return sections


def _heading_starts(text: str) -> list[int]:
    """Where ATX heading lines begin, skipping those inside fenced code blocks."""
    starts = []
    fence: str | None = None
    for match in _blocks(text):
        marker = match["fence"]
        if marker is None:
            if fence is None:
                starts.append(match.start())
        elif fence is None:
            fence = marker
        elif marker[0] == fence[0] and len(marker) >= len(fence) and not match["info"].strip():
            fence = None
    return starts


def _blocks(text: str) -> Iterator[re.Match[str]]:
    """What ``_MARKDOWN_BLOCK.finditer(text)`` finds, tried only at the lines whose first
    characters (after at most three spaces) are a heading's or a fence's."""
    after = 0  # where the next block may begin: past the last one
    for mark in _BLOCK_MARKS.finditer(text):
        line = mark.start()
        while line > 0 and mark.start() - line < 3 and text[line - 1] == " ":
            line -= 1
        if line < after or (line > 0 and text[line - 1] != "\n"):
            continue
        found = _MARKDOWN_BLOCK.match(text, line)
        if found is not None:
            yield found
            after = found.end()
