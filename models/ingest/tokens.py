"""Counting tokens: with a model's own tokenizer, or by a conservative estimate.

A chunk must fit its model's input, and a request to an embeddings API its token budget.
Where the model's tokenizer is at hand (the local model), it counts; elsewhere (an
OpenAI-compatible server, whose tokenizer cannot be fetched at run time) tokens are
estimated from UTF-8 bytes. OpenAI's cl100k/o200k tokenizers average about 4 bytes a token
on English and 3 on code; CJK text runs 1-2 tokens a 3-byte character. Counting 2.5 bytes a
token overestimates all but the most unusual text, and an overestimate only costs an extra
request or a smaller chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TokenCounter = Callable[[str], int]


def hf_token_counter(tokenizer: Any) -> TokenCounter:
    """Count with a HuggingFace tokenizer, special tokens ([CLS], [SEP]) included, untruncated."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    # A private copy: the embedder's tokenizer has its truncation and padding set per call.
    private = type(backend).from_str(backend.to_str())
    private.no_truncation()
    private.no_padding()

    def count_tokens(text: str) -> int:
        try:
            return len(private.encode(text, add_special_tokens=True))
        except TypeError:  # lone surrogates cannot be handed to Rust; count them as "?"
            clean = text.encode("utf-8", "replace").decode("utf-8")
            if clean == text:
                raise
            return len(private.encode(clean, add_special_tokens=True))

    return count_tokens


def estimate_tokens(text: str) -> int:
    """A deliberately high token count for OpenAI-style tokenizers: UTF-8 bytes / 2.5, up,
    + 1 (lone surrogates counted as their 3 bytes)."""
    return (2 * len(text.encode("utf-8", "surrogatepass")) + 4) // 5 + 1
