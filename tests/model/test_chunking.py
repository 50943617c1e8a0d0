"""Chunking: no chunk over the limit with the model's own tokenizer, structure-first splits.

The real all-MiniLM-L6-v2 tokenizer is loaded once for the module; the property tests run
mostly on cheap counters, so that hypothesis can try many texts and many small limits.
"""

from __future__ import annotations

import inspect
import json.decoder
import random
import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.embedding.local import LocalEmbedder
from models.embedding.spaces import MINILM_384
from models.ingest.chunking import Chunk, ChunkSpec, split_text
from models.ingest.tokens import TokenCounter, estimate_tokens, hf_token_counter
from models.settings import EncoderOptions

LIMIT = MINILM_384.max_input_tokens  # 256 word pieces, [CLS] and [SEP] included
WORDS = [
    *("vector", "memory", "retrieval", "postgres", "index", "embedding", "query", "document"),
    *("chunk", "tokenizer", "overlap", "heading", "paragraph", "sentence", "model", "service"),
]
HEADING_LINE = re.compile(r"^#{1,6} ", re.MULTILINE)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder(MINILM_384)
    model.load()
    return model


@pytest.fixture(scope="module")
def count(embedder: LocalEmbedder) -> TokenCounter:
    return hf_token_counter(embedder.tokenizer)


def prose(seed: int, paragraphs: int) -> str:
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))).capitalize() + "."

    def paragraph() -> str:
        return " ".join(sentence() for _ in range(rng.randint(1, 12)))

    return "\n\n".join(paragraph() for _ in range(paragraphs))


def markdown_document(seed: int) -> str:
    rng = random.Random(seed)
    parts = ["Preamble before any heading.", "# Title"]
    for n in range(12):
        parts.append(f"{'#' * rng.randint(2, 4)} Section {n}")
        parts.append(prose(seed + n, rng.randint(1, 6)))
        if n % 3 == 0:
            parts.append("```python\n# a comment, not a heading\ndef f(x):\n    return x\n```")
    return "\n\n".join(parts)


def cjk_text(seed: int, *, punctuated: bool) -> str:
    rng = random.Random(seed)
    chars = [chr(0x4E00 + rng.randrange(20_000)) for _ in range(6_000)]
    if punctuated:
        chars = [
            c + ("。" if rng.random() < 0.05 else "\uff0c" if rng.random() < 0.05 else "")
            for c in chars
        ]
    return "".join(chars)


def emoji_text(seed: int) -> str:
    rng = random.Random(seed)
    pieces = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "❤️", " ", "\n"]
    return "".join(rng.choice(pieces) for _ in range(3_000))


def giant_word(seed: int, alphabet: list[str], length: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


PATHOLOGICAL = {
    "giant word of one letter": "x" * 5_000,
    "giant word that tokenizes": giant_word(1, [*WORDS, "-", "_", "/"], 2_000),
    "digits": giant_word(2, list("0123456789"), 5_000),
    "zalgo": "Z" + "\u0301\u0316\u0344" * 2_000 + " end",
    "combining on spaces": " \u0301" * 2_000,
    "zero width": "a\u200b" * 3_000,
    "lone surrogates": "ok \ud800\udfff\ud800 " * 500,
    "control characters": "".join(chr(c) for c in range(0x20)) * 200,
    "right to left": "שלום עולם " * 500 + "مرحبا بالعالم " * 500,
    "emoji": emoji_text(3),
    "cjk without punctuation": cjk_text(4, punctuated=False),
}


def check_chunks(text: str, chunks: list[Chunk], spec: ChunkSpec, count: TokenCounter) -> None:
    """What holds for every split: within the limit, exact slices, stripped, ordered, complete."""
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.content == text[chunk.start : chunk.end]
        assert chunk.content and chunk.content == chunk.content.strip()
        assert count(chunk.content) == chunk.tokens <= spec.max_tokens
        assert spec.max_chars is None or len(chunk.content) <= spec.max_chars
    for before, after in pairwise(chunks):
        assert before.start <= after.start and before.end < after.end
        if spec.overlap_tokens == 0:
            assert before.end <= after.start
    covered = [False] * len(text)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    assert all(covered[i] for i, char in enumerate(text) if not char.isspace())


def bodies(chunks: list[Chunk], text: str) -> list[str]:
    """Each chunk without the tail of the previous one it repeats."""
    ends = [0, *(chunk.end for chunk in chunks)]
    return [
        text[max(chunk.start, end) : chunk.end] for chunk, end in zip(chunks, ends, strict=False)
    ]


# -- the real tokenizer -----------------------------------------------------------------------


CASES = {
    "prose": prose(1, 300),
    "markdown": markdown_document(2),
    "code": inspect.getsource(json.decoder),
    "cjk": cjk_text(3, punctuated=True),
    **PATHOLOGICAL,
}


@pytest.mark.parametrize("overlap", [0, 32])
@pytest.mark.parametrize("kind", list(CASES))
def test_no_chunk_over_the_model_limit(count: TokenCounter, kind: str, overlap: int):
    text = CASES[kind]
    spec = ChunkSpec(max_tokens=LIMIT, overlap_tokens=overlap)
    for markdown in (False, True):
        chunks = split_text(text, spec, count, markdown=markdown)
        check_chunks(text, chunks, spec, count)
        assert chunks


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_the_counter_agrees_with_what_the_model_reads(count: TokenCounter, backend: str):
    """Each backend's own tokenizer, as it encodes (truncation on), reads every chunk whole."""
    model = LocalEmbedder(MINILM_384, EncoderOptions(backend=backend))
    model.load()
    text = prose(5, 40) + "\n\n" + cjk_text(5, punctuated=True) + emoji_text(5)
    chunks = split_text(text, ChunkSpec(max_tokens=LIMIT, overlap_tokens=0), count)
    for chunk in chunks:
        if backend == "torch":
            ids = model.tokenizer(chunk.content, truncation=True, max_length=LIMIT)["input_ids"]
        else:
            ids = model.tokenizer.encode(chunk.content).ids
        assert len(ids) == chunk.tokens <= LIMIT


def test_chunks_fill_up_to_the_limit(count: TokenCounter):
    chunks = split_text(prose(6, 200), ChunkSpec(max_tokens=LIMIT, overlap_tokens=0), count)
    assert sum(chunk.tokens for chunk in chunks[:-1]) / (len(chunks) - 1) > 0.75 * LIMIT


def test_every_word_appears_in_order(count: TokenCounter):
    text = prose(7, 100)
    for overlap in (0, 32):
        chunks = split_text(text, ChunkSpec(max_tokens=LIMIT, overlap_tokens=overlap), count)
        assert " ".join(bodies(chunks, text)).split() == text.split()


def test_prose_splits_at_sentence_ends(count: TokenCounter):
    text = prose(8, 100)
    chunks = split_text(text, ChunkSpec(max_tokens=LIMIT, overlap_tokens=0), count)
    assert all(chunk.content.endswith(".") for chunk in chunks)
    assert all(chunk.content[0].isupper() for chunk in chunks)


def test_overlap_repeats_the_tail_of_the_previous_chunk(count: TokenCounter):
    text = prose(9, 100)
    chunks = split_text(text, ChunkSpec(max_tokens=LIMIT, overlap_tokens=32), count)
    assert len(chunks) > 10
    for before, after in pairwise(chunks):
        repeated = text[after.start : before.end]
        assert after.start < before.end
        assert before.content.endswith(repeated) and after.content.startswith(repeated)
        assert text[after.start - 1].isspace()  # the tail begins at a word
        assert 0 < count(repeated) - 2 <= 32


def test_no_overlap_when_none_is_asked(count: TokenCounter):
    text = prose(10, 100)
    chunks = split_text(text, ChunkSpec(max_tokens=LIMIT, overlap_tokens=0), count)
    assert all(b.end < a.start for b, a in pairwise(chunks))


@pytest.mark.parametrize("overlap", [0, 32])
def test_headings_start_chunks_in_markdown_mode(count: TokenCounter, overlap: int):
    text = markdown_document(11)
    spec = ChunkSpec(max_tokens=LIMIT, overlap_tokens=overlap)
    chunks = split_text(text, spec, count, markdown=True)
    comments = {m.start() for m in re.finditer("# a comment", text)}  # in fenced code
    headings = [m.start() for m in HEADING_LINE.finditer(text) if m.start() not in comments]
    title, first_section = headings[:2]  # "# Title" has no text: it joins the next section
    assert re.match(r"# Title\n\n#+ Section 0\n", text[title : title + 30])
    assert set(headings) - {first_section} <= {chunk.start for chunk in chunks}
    for chunk in chunks:
        inner = {chunk.start + m.start() for m in HEADING_LINE.finditer(chunk.content, 1)}
        assert inner <= {first_section} | comments


def test_plain_mode_merges_small_sections(count: TokenCounter):
    text = "# One\n\nFirst.\n\n# Two\n\nSecond."
    spec = ChunkSpec(max_tokens=LIMIT, overlap_tokens=0)
    assert [c.content for c in split_text(text, spec, count)] == [text]
    assert [c.content for c in split_text(text, spec, count, markdown=True)] == [
        "# One\n\nFirst.",
        "# Two\n\nSecond.",
    ]


def test_bare_headings_join_the_next_section(count: TokenCounter):
    text = "# Guide\n## Install\n\nRun it.\n\n~~~\n# shell comment\n~~~\n\n## Notes\n### Empty\n"
    spec = ChunkSpec(max_tokens=LIMIT, overlap_tokens=0)
    assert [c.content for c in split_text(text, spec, count, markdown=True)] == [
        "# Guide\n## Install\n\nRun it.\n\n~~~\n# shell comment\n~~~",
        "## Notes\n### Empty",
    ]


def test_deterministic(embedder: LocalEmbedder):
    text = markdown_document(12) + cjk_text(12, punctuated=True)
    spec = ChunkSpec(max_tokens=LIMIT, overlap_tokens=32)
    first = split_text(text, spec, hf_token_counter(embedder.tokenizer), markdown=True)
    second = split_text(text, spec, hf_token_counter(embedder.tokenizer), markdown=True)
    assert first == second


def test_hf_counter_counts_special_tokens_without_truncating(embedder: LocalEmbedder):
    backend = getattr(embedder.tokenizer, "backend_tokenizer", embedder.tokenizer)
    before = (backend.truncation, backend.padding)
    count = hf_token_counter(embedder.tokenizer)
    assert count("") == 2
    assert count("hello world") == 4
    assert count("word " * 1_000) == 1_002
    assert count("a\ud800b") == 5  # a lone surrogate counts as "?", it does not raise
    assert (backend.truncation, backend.padding) == before  # the embedder's copy is untouched
    assert hf_token_counter(backend)("hello world") == 4


def test_large_document_for_the_openai_space():
    text = prose(13, 2_000) + "\n\n" + "y" * 100_000
    spec = ChunkSpec(max_tokens=8_191, overlap_tokens=200)
    chunks = split_text(text, spec, estimate_tokens, markdown=True)
    check_chunks(text, chunks, spec, estimate_tokens)
    assert max(chunk.tokens for chunk in chunks) > 8_000


# -- small limits, cheap counters -------------------------------------------------------------


def words_and_overhead(text: str) -> int:
    """Like a word-piece tokenizer: two special tokens, a token a word and more for long ones."""
    return 2 + sum(1 + len(word) // 4 for word in text.split())


def unknown_long_words(text: str) -> int:
    """Like BERT, which reads a word of over 100 characters as one [UNK]: not monotonic."""
    return 2 + sum(1 if len(word) > 12 else 1 + len(word) // 3 for word in text.split())


def more_than_its_parts(text: str) -> int:
    """A whole counts more than its parts added up, so the added-up estimates fall short."""
    return 1 + len(text) + len(text) // 8


COUNTERS: list[TokenCounter] = [
    len,
    estimate_tokens,
    words_and_overhead,
    unknown_long_words,
    more_than_its_parts,
]
PIECES = [
    "word", "Word", "a", "longerword", "x" * 40, " ", "\xa0", "  ", "\n", "\n\n", "\r\n", "\t",
    "\u3000", ". ", "! ", "? ", "。", "\uff0c", ", ", "# ", "\n# H\n", "\n## H2 ", "```\n", "😀",
    "👨‍👩‍👧", "\u0301", "\u200d", "\ufe0f", "é", "中文", "\ud800",
]  # fmt: skip
texts = st.lists(st.sampled_from(PIECES) | st.text(max_size=6), max_size=60).map("".join)


@settings(max_examples=400, deadline=None, database=None)
@given(
    text=texts,
    max_tokens=st.integers(3, 40),
    overlap_share=st.floats(0, 0.9),
    counter=st.sampled_from(COUNTERS),
    markdown=st.booleans(),
    max_chars=st.none() | st.integers(1, 80),
)
def test_property_cheap_counters(
    text: str,
    max_tokens: int,
    overlap_share: float,
    counter: TokenCounter,
    markdown: bool,
    max_chars: int | None,
):
    overlap = int(max_tokens * overlap_share)
    spec = ChunkSpec(max_tokens=max_tokens, overlap_tokens=overlap, max_chars=max_chars)
    chunks = split_text(text, spec, counter, markdown=markdown)
    check_chunks(text, chunks, spec, counter)
    assert chunks == split_text(text, spec, counter, markdown=markdown)
    assert bool(chunks) == bool(text.strip())


@settings(max_examples=40, deadline=None, database=None)
@given(text=texts, max_tokens=st.integers(8, 24), overlap=st.integers(0, 3), markdown=st.booleans())
def test_property_real_tokenizer(
    count: TokenCounter, text: str, max_tokens: int, overlap: int, markdown: bool
):
    spec = ChunkSpec(max_tokens=max_tokens, overlap_tokens=overlap)
    check_chunks(text, split_text(text, spec, count, markdown=markdown), spec, count)


# -- edges ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\n\t \u3000 \r\n"])
def test_blank_text_gives_no_chunks(count: TokenCounter, text: str):
    assert split_text(text, ChunkSpec(max_tokens=LIMIT, overlap_tokens=32), count) == []


def test_short_text_is_one_stripped_chunk(count: TokenCounter):
    text = "\n  Hello, world.  \n"
    chunks = split_text(text, ChunkSpec(max_tokens=LIMIT, overlap_tokens=32), count)
    assert chunks == [Chunk(index=0, content="Hello, world.", tokens=6, start=3, end=16)]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_impossible_specs_are_refused(max_tokens: int, overlap: int):
    with pytest.raises(ValueError):
        ChunkSpec(max_tokens=max_tokens, overlap_tokens=overlap)


def test_a_character_over_the_limit_is_refused():
    with pytest.raises(ValueError, match="one character"):
        split_text("ab 😀", ChunkSpec(max_tokens=2, overlap_tokens=0), estimate_tokens)


def test_estimate_tokens():
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcde") == 3  # 5 bytes / 2.5 = 2, + 1
    assert estimate_tokens("abcdef") == 4  # 2.4 rounds up
    assert estimate_tokens("é") == 2
    assert estimate_tokens("\ud800") == 3  # lone surrogates do not raise


def test_a_long_unbroken_word_is_cut_at_the_character_limit(count: TokenCounter):
    """The model reads a word over 100 characters as one unknown token: only the character
    limit keeps such a chunk within what a memory or a chunk may hold."""
    text = "x" * 100_000 + " tail"
    spec = ChunkSpec(max_tokens=LIMIT, overlap_tokens=32, max_chars=32_000)
    chunks = split_text(text, spec, count)
    check_chunks(text, chunks, spec, count)
    assert len(chunks) == 4 and "".join(c.content for c in chunks[:4]).startswith("x" * 96_000)
