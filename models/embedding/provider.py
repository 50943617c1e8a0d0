"""The ``Embedder`` protocol, and the started embedder of each configured space.

The HTTP edge embeds query text and the worker embeds content, so both use this module.
Embedders are async: the local model (``local.py``) runs in a thread, off the event loop;
the OpenAI-compatible provider (``openai_compatible.py``) speaks async HTTP. Heavy imports
(torch, sentence-transformers) happen in ``start()``, never at import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from models.embedding.local import LocalEmbedder
from models.embedding.openai_compatible import OpenAIEmbedder
from models.embedding.spaces import Space
from models.ingest.tokens import TokenCounter, estimate_tokens, hf_token_counter
from models.settings import EncoderOptions


class Embedder(Protocol):
    """Turns texts into unit vectors of ``space.dims`` dimensions."""

    space: Space

    async def start(self) -> None:
        """Do the expensive set-up (load weights, open a client); called once at boot."""

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dims), rows L2-normalised.

        Raises ``EmbeddingError``: ``permanent`` when retrying cannot help.
        """

    async def close(self) -> None:
        """Release what ``start()`` opened."""


def token_counter(embedder: Embedder) -> TokenCounter:
    """How a space counts a chunk's tokens: the model's own tokenizer where we have it
    (what the model truncates by), else a conservative estimate."""
    if isinstance(embedder, LocalEmbedder):
        return hf_token_counter(embedder.tokenizer)
    return estimate_tokens


def make_embedder(space: Space, local: EncoderOptions | None = None) -> Embedder:
    """The embedder of a space's provider (not started)."""
    if space.provider == "openai":
        return OpenAIEmbedder(space)
    return LocalEmbedder(space, local)


async def start_embedders(
    spaces: Iterable[Space],
    *,
    local: EncoderOptions | None = None,
    given: dict[str, Embedder] | None = None,
) -> dict[str, Embedder]:
    """A started embedder for each space but the external ones (their clients embed), by
    name (``given`` ones are used as they are)."""
    embedders: dict[str, Embedder] = {}
    for space in spaces:
        if space.external:
            continue
        embedder = (given or {}).get(space.name) or make_embedder(space, local)
        await embedder.start()
        embedders[space.name] = embedder
    return embedders
