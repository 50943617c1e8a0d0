"""The OpenAI-compatible embeddings provider: batched, concurrent, retried async HTTP.

Speaks ``POST {base_url}/embeddings`` as OpenAI, Azure OpenAI (v1 API), vLLM and TEI do.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import httpx
import numpy as np
from prometheus_client import Counter

from models.embedding.spaces import Space
from models.errors import EmbeddingError, WrongDimensions
from models.ingest.tokens import estimate_tokens
from models.observe import metrics
from models.settings import OpenAIOptions

log = logging.getLogger("engram.openai")

MAX_BACKOFF_SECONDS = 30.0
# A longer Retry-After is better spent by the worker on other items: give the batch back.
MAX_RETRY_AFTER_SECONDS = 60.0
MAX_MESSAGE_CHARS = 500
# Request timeout and conflict, rate limits and server trouble: retrying can help.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class _Retryable(Exception):
    """A failure worth another attempt; ``after`` is the server's Retry-After, if any.

    ``kind`` names it in metrics: timeout, connection, rate_limited, server_error or
    http_<status>.
    """

    def __init__(self, reason: str, *, kind: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.after = after


def plan_batches(texts: Sequence[str], *, max_inputs: int, max_tokens: int) -> list[range]:
    """Consecutive index ranges within both limits; an input over the budget goes alone."""
    batches: list[range] = []
    start, tokens = 0, 0
    for i, text in enumerate(texts):
        cost = estimate_tokens(text)
        if i > start and (i - start >= max_inputs or tokens + cost > max_tokens):
            batches.append(range(start, i))
            start, tokens = i, 0
        tokens += cost
    if texts:
        batches.append(range(start, len(texts)))
    return batches


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The server's requested wait: ``retry-after-ms``, else ``Retry-After`` (seconds or date)."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are always GMT
    return max(0.0, when.timestamp() - time.time())


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible ``/embeddings`` endpoint."""

    def __init__(self, space: Space) -> None:
        if space.openai is None:
            raise ValueError(f"space {space.name} has no OpenAI options")
        self.space = space
        self._options: OpenAIOptions = space.openai
        self._url = space.openai.base_url.rstrip("/") + "/embeddings"
        self._client: httpx.AsyncClient | None = None
        self._gate: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._gate = asyncio.Semaphore(self._options.concurrency)
        self._client = httpx.AsyncClient(
            headers=self._auth_headers(), timeout=self._options.timeout_seconds
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.space.dims), dtype=np.float32)
        options = self._options
        batches = plan_batches(
            texts, max_inputs=options.max_batch_inputs, max_tokens=options.max_batch_tokens
        )
        tasks = [asyncio.ensure_future(self._embed_batch([texts[i] for i in b])) for b in batches]
        try:
            parts = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # one batch failed: the others' vectors are of no use
                task.cancel()
        return np.concatenate(parts)

    def _auth_headers(self) -> dict[str, str]:
        key, header = self._options.api_key, self._options.auth_header
        if key is None:
            return {}
        return {header: f"Bearer {key}" if header.lower() == "authorization" else key}

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        if self._gate is None:
            raise RuntimeError("OpenAIEmbedder.start() was not called")
        async with self._gate:
            attempt = 0
            while True:
                try:
                    return await self._request(texts)
                except _Retryable as failure:
                    self._count(metrics.PROVIDER_ERRORS, failure.kind)
                    attempt += 1
                    delay = self._delay(failure, attempt)
                    self._count(metrics.PROVIDER_RETRIES, failure.kind)
                    log.warning("embeddings request failed (%s), retry in %.2fs", failure, delay)
                    await asyncio.sleep(delay)
                except WrongDimensions:
                    self._count(metrics.PROVIDER_ERRORS, "wrong_dimensions")
                    raise
                except EmbeddingError as error:
                    self._count(
                        metrics.PROVIDER_ERRORS, "refused" if error.permanent else "malformed"
                    )
                    raise

    def _count(self, counter: Counter, kind: str) -> None:
        counter.labels(space=self.space.name, kind=kind).inc()

    def _delay(self, failure: _Retryable, attempt: int) -> float:
        """How long to wait before retry ``attempt``; raises once retrying is not worth it."""
        if attempt > self._options.max_retries:
            raise EmbeddingError(
                f"the embeddings provider failed {attempt} times, last: {failure.reason}",
                permanent=False,
            )
        if failure.after is not None:
            if failure.after > MAX_RETRY_AFTER_SECONDS:
                raise EmbeddingError(
                    f"the embeddings provider asks to retry after {failure.after:.0f}s",
                    permanent=False,
                )
            return failure.after
        backoff = min(MAX_BACKOFF_SECONDS, self._options.backoff_seconds * 2.0 ** (attempt - 1))
        return backoff * random.uniform(1.0, 1.1)

    async def _request(self, texts: list[str]) -> np.ndarray:
        if self._client is None:
            raise RuntimeError("OpenAIEmbedder.start() was not called")
        body: dict[str, Any] = {
            "model": self.space.model,
            "input": texts,
            "encoding_format": "float",
        }
        if self._options.dimensions is not None:
            body["dimensions"] = self._options.dimensions
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.TimeoutException:
            raise _Retryable("timeout", kind="timeout") from None
        except httpx.TransportError as exc:
            raise _Retryable(type(exc).__name__, kind="connection") from None
        status = response.status_code
        if status in RETRYABLE_STATUSES or status >= 500:
            raise _Retryable(
                f"HTTP {status}",
                kind=_status_kind(status),
                after=retry_after_seconds(response.headers),
            )
        if status >= 300:
            raise EmbeddingError(
                f"the embeddings provider refused the request (HTTP {status}): "
                f"{self._provider_message(response)}",
                permanent=True,
            )
        return self._vectors(response, len(texts))

    def _provider_message(self, response: httpx.Response) -> str:
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.text
        if self._options.api_key:  # some servers echo what they were sent
            message = message.replace(self._options.api_key, "***")
        return message[:MAX_MESSAGE_CHARS]

    def _vectors(self, response: httpx.Response, count: int) -> np.ndarray:
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            rows = [item["embedding"] for item in items]
            indexes = [item["index"] for item in items]
        except (ValueError, KeyError, TypeError):
            raise EmbeddingError(
                "the embeddings provider sent a malformed body", permanent=False
            ) from None
        if indexes != list(range(count)):
            raise EmbeddingError(
                f"the embeddings provider answered {len(rows)} vectors for {count} inputs",
                permanent=False,
            )
        for row in rows:
            # a wrong length is misconfiguration (model, dimensions): it must never reach SQL
            if not isinstance(row, list):
                raise EmbeddingError(
                    "the embeddings provider sent a malformed body", permanent=False
                )
            if len(row) != self.space.dims:
                raise WrongDimensions(
                    f"the embeddings provider returned vectors of length {len(row)}, "
                    f"space {self.space.name} expects {self.space.dims}",
                    actual=len(row),
                )
        return _unit_rows(rows)


def _status_kind(status: int) -> str:
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else f"http_{status}"


def _unit_rows(rows: list[Any]) -> np.ndarray:
    """The rows as L2-normalised float32; non-finite or zero vectors are a provider fault."""
    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError):
        raise EmbeddingError(
            "the embeddings provider sent non-numeric vectors", permanent=False
        ) from None
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.isfinite(matrix).all() or not np.isfinite(norms).all():
        raise EmbeddingError("the embeddings provider sent non-finite vectors", permanent=False)
    if (norms == 0).any():
        raise EmbeddingError("the embeddings provider sent a zero vector", permanent=False)
    unit: np.ndarray = matrix / norms
    return unit
