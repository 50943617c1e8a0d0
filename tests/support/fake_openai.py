"""A local server speaking the OpenAI embeddings protocol, with switchable faults.

Vectors are a real 384-dim encoder's, sent through a fixed Gaussian projection to ``dims``
and renormalised, so meaning survives: cosine similarities stay close to the encoder's.
It serves real HTTP on 127.0.0.1, so worker subprocesses can call it too.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import numpy as np

Encode = Callable[[list[str]], np.ndarray]
FAULTS = frozenset(
    {"429", "500", "503", "slow", "401", "400", "wrong_length", "malformed", "disconnect"}
)
MAX_INPUTS = 2048
TOO_LONG_MARKER = "__too_long__"


class FakeOpenAI:
    """``POST <any prefix>/embeddings`` as OpenAI answers it; faults are queued per request.

    Fault kinds and their params: ``"429"`` (``retry_after`` seconds, default 1; optional
    ``retry_after_ms`` adds that header), ``"500"``, ``"503"``, ``"slow"`` (``seconds``, default
    1, then a normal answer), ``"401"``, ``"400"`` (``message``), ``"wrong_length"``
    (``length``, default dims - 1), ``"malformed"`` (200 with a non-JSON body),
    ``"disconnect"`` (close the connection without answering).
    """

    def __init__(
        self,
        encode: Encode,
        *,
        dims: int = 1536,
        seed: int = 7,
        api_key: str | None = "test-openai-key",
    ) -> None:
        self.encode = encode
        self.dims = dims
        self.seed = seed
        self.api_key = api_key
        self.url = ""
        # every request as (headers with lower-case names, JSON body or {}), and its path
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.paths: list[str] = []
        self.max_in_flight = 0  # most requests handled at once since reset_log()
        self._in_flight = 0
        self._generation = 0
        self._lock = threading.Lock()
        self._queued: deque[tuple[str, dict[str, Any]]] = deque()
        self._always: tuple[str, dict[str, Any]] | None = None
        self._projection: np.ndarray | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on an ephemeral port; the base URL (``http://127.0.0.1:PORT/v1``)."""
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults and the request log ----------------------------------------------------------

    def fail_next(self, kind: str, times: int = 1, **params: Any) -> None:
        """The next ``times`` requests (after those already queued) get this fault."""
        _check_kind(kind)
        with self._lock:
            self._queued.extend([(kind, params)] * times)

    def always(self, kind: str, **params: Any) -> None:
        """Every request with no queued fault gets this one, until ``clear()``."""
        _check_kind(kind)
        with self._lock:
            self._always = (kind, params)

    def clear(self) -> None:
        """Drop queued and persistent faults."""
        with self._lock:
            self._queued.clear()
            self._always = None

    def reset_log(self) -> None:
        """Forget the logged requests and the in-flight high-water mark."""
        with self._lock:
            self.requests.clear()
            self.paths.clear()
            self.max_in_flight = self._in_flight = 0
            self._generation += 1

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- what the handler threads call -------------------------------------------------------

    def _begin(
        self, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, str, dict[str, Any]]:
        """Log the request; its log generation and fault (``""`` for none)."""
        with self._lock:
            self.requests.append((headers, body))
            self.paths.append(path)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            kind, params = self._queued.popleft() if self._queued else self._always or ("", {})
            return self._generation, kind, params

    def _end(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:  # a request from before reset_log() is forgotten
                self._in_flight -= 1

    def _authorised(self, headers: dict[str, str]) -> bool:
        if self.api_key is None:
            return True
        bearer = headers.get("authorization", "")
        return bearer == f"Bearer {self.api_key}" or headers.get("api-key") == self.api_key

    def vectors(self, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        """The unit vectors this server answers for ``texts``."""
        local = np.asarray(self.encode(texts), dtype=np.float32)
        with self._lock:
            if self._projection is None or self._projection.shape[0] != local.shape[1]:
                rng = np.random.default_rng(self.seed)
                self._projection = rng.standard_normal((local.shape[1], self.dims))
            projection = self._projection
        vectors = (local @ projection)[:, : dimensions or self.dims]
        unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit.astype(np.float32)


def _check_kind(kind: str) -> None:
    if kind not in FAULTS:
        raise ValueError(f"unknown fault {kind!r} (known: {', '.join(sorted(FAULTS))})")


def error_body(message: str, *, code: str | None = None, param: str | None = None) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def masked(key: str) -> str:
    """A key as OpenAI shows it in errors: a few characters at each end."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"


def _invalid_input(texts: Any) -> bytes | None:
    """OpenAI's 400 body for an unusable ``input``, or None."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return error_body(
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            param="input",
        )
    if any(not t for t in texts):
        return error_body("'$.input' is invalid: empty strings are not allowed.", param="input")
    if len(texts) > MAX_INPUTS:
        return error_body(
            f"'$.input' is too long: {len(texts)} inputs, at most {MAX_INPUTS} per request.",
            param="input",
        )
    if any(TOO_LONG_MARKER in t for t in texts):
        return error_body(
            "This model's maximum context length is 8192 tokens, however you requested "
            "9000 tokens (9000 in your prompt; 0 for the completion). Please reduce your "
            "prompt; or completion length."
        )
    return None


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:
        return None  # keep test output clean

    def do_POST(self) -> None:
        fake = self.server_fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = self.rfile.read(int(headers.get("content-length", "0")))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        generation, kind, params = fake._begin(
            self.path, headers, body if isinstance(body, dict) else {}
        )
        self._counted: int | None = generation  # the generation it is counted in
        try:
            self._answer(fake, kind, params, headers, body)
        except (ConnectionError, TimeoutError):
            pass  # the client gave up (a timeout test): nobody is listening
        finally:
            self._finish()

    def _finish(self) -> None:
        """The request leaves the in-flight count, once: before its answer is written, so
        that a client that has the answer never finds it still counted."""
        if self._counted is not None:
            self.server_fake._end(self._counted)
            self._counted = None

    def _answer(
        self,
        fake: FakeOpenAI,
        kind: str,
        params: dict[str, Any],
        headers: dict[str, str],
        body: Any,
    ) -> None:
        if kind == "disconnect":
            self.close_connection = True
            return
        if kind == "slow":
            time.sleep(float(params.get("seconds", 1.0)))
        if kind in ("429", "500", "503", "400", "malformed"):
            self._fault(kind, params)
            return
        if kind == "401" or not fake._authorised(headers):
            presented = headers.get("authorization", "").removeprefix("Bearer ")
            key = presented or headers.get("api-key", "")
            message = (
                f"Incorrect API key provided: {masked(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            self._send(401, error_body(message, code="invalid_api_key"))
            return
        if not self.path.endswith("/embeddings"):
            self._send(404, error_body(f"Invalid URL (POST {self.path})"))
            return
        wrong_length = kind == "wrong_length"
        self._embeddings(fake, body, length=params.get("length", -1) if wrong_length else None)

    def _fault(self, kind: str, params: dict[str, Any]) -> None:
        if kind == "429":
            extra = {"Retry-After": str(params.get("retry_after", 1))}
            if "retry_after_ms" in params:
                extra["retry-after-ms"] = str(params["retry_after_ms"])
            message = "Rate limit reached for requests. Please try again later."
            self._send(429, error_body(message, code="rate_limit_exceeded"), extra)
        elif kind == "400":
            self._send(400, error_body(str(params.get("message", "Bad request"))))
        elif kind == "malformed":
            self._send(200, b"<html>upstream proxy hiccup</html>", content_type="text/html")
        else:
            message = "The server had an error while processing your request."
            error = {"message": message, "type": "server_error", "param": None, "code": None}
            self._send(int(kind), json.dumps({"error": error}).encode())

    def _embeddings(self, fake: FakeOpenAI, body: Any, *, length: int | None) -> None:
        if not isinstance(body, dict):
            self._send(400, error_body("We could not parse the JSON body of your request."))
            return
        if not isinstance(body.get("model"), str):
            self._send(400, error_body("you must provide a model parameter", param="model"))
            return
        if (invalid := _invalid_input(body.get("input"))) is not None:
            self._send(400, invalid)
            return
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            not isinstance(dimensions, int) or not 1 <= dimensions <= fake.dims
        ):
            self._send(400, error_body("Invalid value for 'dimensions'.", param="dimensions"))
            return
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            self._send(400, error_body("Invalid encoding_format.", param="encoding_format"))
            return
        vectors = fake.vectors(texts, dimensions)
        if length is not None:  # the wrong_length fault; -1: one component short
            vectors = _resized(vectors, length if length >= 0 else vectors.shape[1] - 1)
        tokens = sum(math.ceil(len(t.encode()) / 4) for t in texts)
        self._send(
            200,
            json.dumps(
                {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
                        for i, v in enumerate(vectors)
                    ],
                    "model": body["model"],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            ).encode(),
        )

    def _send(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> None:
        self._finish()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _resized(vectors: np.ndarray, length: int) -> np.ndarray:
    """Vectors cut or zero-padded to ``length`` components (the ``wrong_length`` fault)."""
    out = np.zeros((len(vectors), length), dtype=np.float32)
    keep = min(length, vectors.shape[1])
    out[:, :keep] = vectors[:, :keep]
    return out


def _encoded(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
