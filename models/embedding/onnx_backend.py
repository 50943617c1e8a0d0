"""all-MiniLM-L6-v2 on ONNX Runtime: exported once from the bundled PyTorch weights, then
run without torch.

The export (torch's TorchScript exporter, then ONNX Runtime's offline BERT fusions)
happens once per model and ONNX Runtime version, into a cache directory shared by every
process; a file lock keeps concurrent starts from exporting twice. Encoding tokenises with
the model's own ``tokenizer.json`` (truncated at the model's 256 word pieces), runs the
graph, mean-pools over the attention mask and L2-normalises, as sentence-transformers does,
so the vectors agree with torch's (``make bench-encoders`` measures how closely, and how
fast each backend is).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FUSED = "model_fused.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def max_tokens(model_path: str) -> int:
    """The model's ``max_seq_length`` (what sentence-transformers truncates at)."""
    config = Path(model_path) / "sentence_bert_config.json"
    return int(json.loads(config.read_text())["max_seq_length"])


def cache_key(model_path: str) -> str:
    """Names an export: the weights' names and sizes and the ONNX Runtime version."""
    import onnxruntime

    files = sorted(p for p in Path(model_path).rglob("*") if p.is_file())
    digest = hashlib.sha256(onnxruntime.__version__.encode())
    for path in files:
        digest.update(f"{path.relative_to(model_path)}:{path.stat().st_size};".encode())
    return digest.hexdigest()[:16]


def exported_model(model_path: str, cache_dir: Path) -> Path:
    """The fused ONNX file for ``model_path``, exported into ``cache_dir`` on first use."""
    target = cache_dir / f"onnx-{cache_key(model_path)}"
    model_file = target / FUSED
    if model_file.exists():
        return model_file
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be exporting the same model
        if model_file.exists():
            return model_file
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_dir))
        try:
            traced = _export(model_path, work)
            _fuse(traced, model_path, work / FUSED)
            traced.unlink()
            work.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
            os.replace(work, target)  # whole directory at once: a reader never sees half
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return model_file


def _export(model_path: str, out: Path) -> Path:
    """Trace the PyTorch weights to ONNX (fp32, dynamic batch and sequence axes)."""
    import torch
    from transformers import AutoModel

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=types)[0]

    # eager attention traces to the pattern that ONNX Runtime's fusions recognise
    model = AutoModel.from_pretrained(
        model_path, attn_implementation="eager", local_files_only=True
    )
    path = out / "model.onnx"
    # eval() on the wrapper: export restores the wrapper's mode, and with it the model's.
    # The tracer warns about shapes it fixes; this graph takes any batch and length.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(model).eval(),
            tuple(torch.ones((2, 8), dtype=torch.int64) for _ in INPUTS),
            str(path),
            dynamo=False,
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*INPUTS, "last_hidden_state"]},
            opset_version=17,
        )
    return path


def _fuse(model_file: Path, model_path: str, out: Path) -> None:
    """ONNX Runtime's offline BERT fusions (attention, skip layer norm, bias gelu)."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((Path(model_path) / "config.json").read_text())
    optimized = optimize_model(
        str(model_file),
        model_type="bert",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
    )
    optimized.save_model_to_file(str(out))


class OnnxEncoder:
    """Encodes texts to unit vectors with an exported model; not thread-safe to configure,
    safe to call from one thread at a time."""

    def __init__(self, model_file: Path, model_path: str, *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
        # the file itself says 128 with fixed-length padding; the model reads 256
        self.tokenizer.enable_truncation(max_tokens(model_path))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        self._session = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Rows in the order of ``texts``; batches of similar lengths (less padding)."""
        order = np.argsort([-len(text) for text in texts], kind="stable")
        ordered = [texts[i] for i in order]
        parts = [
            self._batch(ordered[start : start + batch_size])
            for start in range(0, len(ordered), batch_size)
        ]
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(parts)
        return vectors

    def _batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feed)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return np.asarray(pooled / norms, dtype=np.float32)
