"""The local model's two backends: ONNX Runtime (default) and PyTorch agree, and the ONNX
graph is exported once, even when several processes start at the same time."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.embedding.local import LocalEmbedder
from models.embedding.spaces import MINILM_384
from models.errors import ConfigError, EmbeddingError
from models.settings import EncoderOptions, Settings

REPO = Path(__file__).resolve().parents[2]
WORDS = [
    *("postgres", "vector", "memory", "search", "index", "user", "session", "chat"),
    *("document", "chunk", "query", "model", "token", "embedding", "retrieval", "latency"),
    *("worker", "queue", "redis", "backup", "export", "cosine", "answer", "meeting"),
    *("invoice", "Berlin", "Tokyo", "coffee", "garden", "train", "budget", "deadline"),
    *("report", "東京", "会議", "🚀", "naïve", "café"),
]


@pytest.fixture(scope="module")
def backends() -> dict[str, LocalEmbedder]:
    loaded = {}
    for backend in ("onnx", "torch"):
        model = LocalEmbedder(MINILM_384, EncoderOptions(backend=backend))
        model.load()
        loaded[backend] = model
    return loaded


def texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    # from one word to well past the 256 word pieces the model reads
    return [" ".join(rng.choices(WORDS, k=rng.choice((1, 5, 20, 80, 400)))) for _ in range(count)]


def test_the_default_backend_is_onnx_and_needs_no_torch(tmp_path: Path):
    assert Settings.from_env({"ENGRAM_HOME": str(tmp_path)}).encoder.backend == "onnx"
    probe = (
        "import sys\n"
        "from models.embedding.local import LocalEmbedder\n"
        "from models.embedding.spaces import MINILM_384\n"
        "model = LocalEmbedder(MINILM_384)\n"
        "model.load()\n"
        "assert model.encode(['hello']).shape == (1, 384)\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"  # a cached export runs without torch in the process


def test_backends_give_the_same_vectors(backends: dict[str, LocalEmbedder]):
    sample = [*texts(200, seed=1), "", " ", "a", "x" * 3_000]
    onnx, torch = (backends[name].encode(sample) for name in ("onnx", "torch"))
    assert onnx.shape == torch.shape == (len(sample), 384)
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert float((onnx * torch).sum(axis=1).min()) > 0.9999


def test_backends_give_the_same_top_10(backends: dict[str, LocalEmbedder]):
    corpus = texts(400, seed=2)
    queries = [" ".join(random.Random(i).choices(WORDS, k=4)) for i in range(50)]
    tops = {}
    for name, model in backends.items():
        scores = model.encode(queries) @ model.encode(corpus).T
        tops[name] = [set(np.argsort(-row, kind="stable")[:10]) for row in scores]
    agree = sum(a == b for a, b in zip(tops["onnx"], tops["torch"], strict=True))
    # ties at the 10th place may swap; anything below 48 of 50 is a real disagreement
    assert agree >= 48


def test_rows_keep_the_order_of_the_texts(backends: dict[str, LocalEmbedder]):
    sample = texts(70, seed=3)  # more than a batch, in mixed lengths (sorted inside)
    together = backends["onnx"].encode(sample)
    one_by_one = np.concatenate([backends["onnx"].encode([text]) for text in sample])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)


def test_unencodable_text_is_a_permanent_error(backends: dict[str, LocalEmbedder]):
    for model in backends.values():
        with pytest.raises(EmbeddingError) as caught:
            model.encode(["fine", "a\ud800b"])
        assert caught.value.permanent


def test_concurrent_starts_export_once(tmp_path: Path):
    cache = tmp_path / "cache"
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from models.embedding.local import LocalEmbedder\n"
        "from models.settings import EncoderOptions\n"
        "from models.embedding.spaces import MINILM_384\n"
        "model = LocalEmbedder(MINILM_384, EncoderOptions(cache_dir=Path(sys.argv[1])))\n"
        "model.load()\n"
        "print(model.encode(['the same text']).tobytes().hex())\n"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", probe, str(cache)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in starts]
    assert [process.returncode for process in starts] == [0, 0]
    assert outputs[0] == outputs[1] != ""
    exports = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(exports) == 1, exports
    assert [p.name for p in exports[0].iterdir()] == ["model_fused.onnx"]
    assert exports[0].stat().st_mode & 0o777 == 0o755  # a shared cache: readable by all


def test_unknown_backend_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="ENGRAM_ENCODER_BACKEND=tensorflow"):
        Settings.from_env({"ENGRAM_HOME": str(tmp_path), "ENGRAM_ENCODER_BACKEND": "tensorflow"})
