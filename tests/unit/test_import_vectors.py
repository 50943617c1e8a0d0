"""An export's vectors, read for import: in the space's own precision, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.embedding.spaces import MINILM_384, SpaceRegistry
from models.errors import InvalidInput
from models.settings import Limits
from models.transfer.reader import Reader

HEADER = {
    "type": "header", "format": "engram.export", "version": 1, "user_id": "alice",
    "exported_at": "2026-12-06T00:00:00Z",
    "spaces": [{"name": "minilm-384", "dims": 384, "provider": "sentence-transformers",
                "model": MINILM_384.model}],
}  # fmt: skip


def read_vector(numbers: str) -> np.ndarray:
    reader = Reader(
        limits=Limits(),
        spaces=SpaceRegistry.with_defaults((MINILM_384,)),
        languages=frozenset({"english"}),
    )
    reader.feed(1, json.dumps(HEADER).encode())
    line = (
        '{"type": "vector", "item_id": "00000000-0000-0000-0000-000000000001", '
        '"kind": "memory", "space": "minilm-384", "content_sha256": "' + "0" * 64 + '", '
        f'"embedding": {numbers}}}'
    )
    reader.feed(2, line.encode())
    [(_, (_, vector))] = reader._lines["vector"]
    return vector


def test_the_shortest_numbers_of_float32_values_read_back_bit_for_bit():
    values = np.random.default_rng(5).normal(size=384).astype(np.float32)
    values[:4] = [0.0, -0.0, np.float32(1e-40), np.float32(-3.4028235e38)]
    numbers = [np.format_float_scientific(v, unique=True, trim="-") for v in values]
    numbers[:2] = ["0", "-0"]  # as pgvector prints zeros
    vector = read_vector("[" + ", ".join(numbers) + "]")
    assert vector.dtype == np.float32
    assert vector.tobytes() == values.tobytes()  # -0 keeps its sign


def test_numbers_outside_the_precision_are_refused():
    with pytest.raises(InvalidInput, match="within"):
        read_vector("[" + ", ".join(["1e39"] * 384) + "]")
    with pytest.raises(InvalidInput, match="all zeros"):
        read_vector("[" + ", ".join(["1e-46"] * 384) + "]")
