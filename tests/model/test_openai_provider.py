"""The OpenAI-compatible provider against a real local HTTP server speaking the protocol."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from email.utils import formatdate
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
from support.fake_openai import FakeOpenAI

from models.embedding.local import LocalEmbedder
from models.embedding.openai_compatible import (
    OpenAIEmbedder,
    plan_batches,
    retry_after_seconds,
)
from models.embedding.spaces import MINILM_384, Space, openai_space
from models.errors import EmbeddingError
from models.ingest.tokens import estimate_tokens
from models.settings import OpenAIOptions

KEY = "sk-test-engram-0123456789abcdef"
TEXTS = [
    "how do I bake bread at home",
    "a recipe for sourdough loaves",
    "kneading dough and letting the yeast rise",
    "the stock market fell sharply today",
    "results of last night's football match",
]


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    embedder = LocalEmbedder(MINILM_384)
    embedder.load()
    return embedder


@pytest.fixture(scope="module")
def server(local: LocalEmbedder) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(local.encode, api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    server.clear()
    server.reset_log()
    yield server
    server.clear()


def space_for(url: str, **options: Any) -> Space:
    settings: dict[str, Any] = {
        "api_key": KEY,
        "backoff_seconds": 0.01,
        "timeout_seconds": 5.0,
        "max_retries": 3,
    }
    return openai_space(OpenAIOptions(base_url=url, **(settings | options)))


def embed(space: Space, texts: Sequence[str]) -> np.ndarray:
    async def run() -> np.ndarray:
        embedder = OpenAIEmbedder(space)
        await embedder.start()
        try:
            return await embedder.embed(texts)
        finally:
            await embedder.close()

    return asyncio.run(run())


def failure(space: Space, texts: Sequence[str] = TEXTS) -> EmbeddingError:
    with pytest.raises(EmbeddingError) as raised:
        embed(space, texts)
    assert space.openai is not None and space.openai.api_key is not None
    assert space.openai.api_key not in str(raised.value)
    return raised.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- vectors ---------------------------------------------------------------------------------


def test_vectors_are_unit_rows_of_the_space_dims(fake: FakeOpenAI) -> None:
    vectors = embed(space_for(fake.url), TEXTS)
    assert vectors.shape == (len(TEXTS), 1536)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    body = fake.requests[0][1]
    assert body["model"] == "text-embedding-3-small"
    assert body["encoding_format"] == "float"
    assert "dimensions" not in body


def test_meaning_survives_the_provider(fake: FakeOpenAI, local: LocalEmbedder) -> None:
    remote, near = embed(space_for(fake.url), TEXTS), local.encode(TEXTS)
    remote_cosines, local_cosines = remote @ remote.T, near @ near.T
    assert np.abs(remote_cosines - local_cosines).max() < 0.1
    _, sourdough, kneading, stocks, football = remote_cosines[0]
    assert min(sourdough, kneading) > max(stocks, football) + 0.2
    query_ranking = np.argsort(-remote_cosines[0])[:3]
    assert list(query_ranking) == list(np.argsort(-local_cosines[0])[:3])


def test_empty_input_makes_no_request(fake: FakeOpenAI) -> None:
    assert embed(space_for(fake.url), []).shape == (0, 1536)
    assert fake.request_count == 0


def test_dimensions_are_sent_and_honoured(fake: FakeOpenAI) -> None:
    space = msgspec.structs.replace(space_for(fake.url, dimensions=256), dims=256)
    vectors = embed(space, TEXTS)
    assert vectors.shape == (len(TEXTS), 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert fake.requests[0][1]["dimensions"] == 256


# -- batching --------------------------------------------------------------------------------


def test_concurrent_batches_keep_input_order(fake: FakeOpenAI) -> None:
    texts = [f"note {i}: {TEXTS[i % len(TEXTS)]}" for i in range(20)]
    expected = embed(space_for(fake.url), texts)
    fake.reset_log()
    fake.fail_next("slow", seconds=0.3)  # the first batch answers last
    vectors = embed(space_for(fake.url, max_batch_inputs=3, concurrency=4), texts)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    sent = [body["input"] for _, body in fake.requests]
    assert fake.request_count == 7 and all(len(inputs) <= 3 for inputs in sent)
    assert sorted(text for inputs in sent for text in inputs) == sorted(texts)
    assert 1 < fake.max_in_flight <= 4


def test_concurrency_is_bounded(fake: FakeOpenAI) -> None:
    fake.always("slow", seconds=0.3)
    embed(space_for(fake.url, max_batch_inputs=1, concurrency=2), TEXTS)
    assert fake.request_count == len(TEXTS)
    assert fake.max_in_flight == 2


def test_the_token_budget_splits_long_inputs(fake: FakeOpenAI) -> None:
    texts = [f"{i} " + "lorem ipsum dolor sit amet " * (5 + i % 7) for i in range(12)]
    budget = 200
    vectors = embed(space_for(fake.url, max_batch_tokens=budget, concurrency=1), texts)
    assert vectors.shape == (12, 1536)
    sent = [body["input"] for _, body in fake.requests]
    assert [text for inputs in sent for text in inputs] == texts  # concurrency 1: in order
    assert len(sent) > 1
    assert all(len(inputs) == 1 or sum(map(estimate_tokens, inputs)) <= budget for inputs in sent)


def test_plan_batches_respects_both_limits() -> None:
    texts = ["a" * 30, "b" * 30, "c" * 300, "d" * 3, "e" * 3, "f" * 3, "g" * 3]
    # 30 bytes estimate 13 tokens, 300 bytes 121, 3 bytes 3
    batches = plan_batches(texts, max_inputs=3, max_tokens=30)
    assert [list(b) for b in batches] == [[0, 1], [2], [3, 4, 5], [6]]
    assert plan_batches([], max_inputs=3, max_tokens=30) == []


def test_token_estimate_is_high_for_english() -> None:
    english = "The quick brown fox jumps over the lazy dog. " * 20
    assert estimate_tokens(english) >= len(english) / 4  # cl100k: about 4 characters a token
    assert estimate_tokens("日本語のテキスト") >= 8  # at least one token a CJK character


# -- authentication --------------------------------------------------------------------------


def test_a_bearer_key_is_sent(fake: FakeOpenAI) -> None:
    embed(space_for(fake.url), TEXTS[:1])
    headers = fake.requests[0][0]
    assert headers["authorization"] == f"Bearer {KEY}"
    assert "api-key" not in headers


def test_an_azure_api_key_header_and_path_are_kept(fake: FakeOpenAI) -> None:
    url = fake.url.removesuffix("/v1") + "/openai/v1/"
    embed(space_for(url, auth_header="api-key"), TEXTS[:1])
    headers = fake.requests[0][0]
    assert headers["api-key"] == KEY
    assert "authorization" not in headers
    assert fake.paths == ["/openai/v1/embeddings"]


# -- transient failures ----------------------------------------------------------------------


def test_429_waits_for_retry_after(fake: FakeOpenAI) -> None:
    fake.fail_next("429", retry_after=1)
    started = time.monotonic()
    vectors = embed(space_for(fake.url), TEXTS)
    assert time.monotonic() - started >= 1.0
    assert vectors.shape == (len(TEXTS), 1536)
    assert fake.request_count == 2


def test_retry_after_ms_takes_precedence(fake: FakeOpenAI) -> None:
    fake.fail_next("429", retry_after=0, retry_after_ms=400)
    started = time.monotonic()
    embed(space_for(fake.url), TEXTS)
    assert time.monotonic() - started >= 0.4
    assert fake.request_count == 2


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    later = retry_after_seconds(httpx.Headers({"retry-after": formatdate(time.time() + 30)}))
    assert later is not None and 25 <= later <= 31
    past = retry_after_seconds(httpx.Headers({"retry-after": formatdate(time.time() - 30)}))
    assert past == 0.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx.Headers()) is None


def test_server_errors_are_retried(fake: FakeOpenAI) -> None:
    fake.fail_next("500")
    fake.fail_next("503")
    vectors = embed(space_for(fake.url), TEXTS)
    assert vectors.shape == (len(TEXTS), 1536)
    assert fake.request_count == 3


def test_a_slow_answer_times_out_and_is_retried(fake: FakeOpenAI) -> None:
    fake.fail_next("slow", seconds=1.0)
    vectors = embed(space_for(fake.url, timeout_seconds=0.3), TEXTS)
    assert vectors.shape == (len(TEXTS), 1536)
    assert fake.request_count == 2


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("500", {}),
        ("503", {}),
        ("429", {"retry_after": 0}),
        ("slow", {"seconds": 0.5}),
        ("disconnect", {}),
    ],
)
def test_persistent_faults_fail_transiently_after_max_retries(
    fake: FakeOpenAI, kind: str, params: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake.always(kind, **params)
    with caplog.at_level(logging.WARNING, logger="engram.openai"):
        error = failure(space_for(fake.url, max_retries=2, timeout_seconds=0.2), TEXTS[:1])
    assert error.permanent is False
    assert fake.request_count == 3
    assert len(caplog.records) == 2
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_an_unreachable_server_fails_transiently() -> None:
    error = failure(space_for(f"http://127.0.0.1:{closed_port()}/v1", max_retries=1))
    assert error.permanent is False


def test_a_long_retry_after_gives_the_batch_back(fake: FakeOpenAI) -> None:
    fake.fail_next("429", retry_after=3600)
    error = failure(space_for(fake.url))
    assert error.permanent is False and "3600" in str(error)
    assert fake.request_count == 1


def test_a_malformed_body_is_transient(fake: FakeOpenAI) -> None:
    fake.fail_next("malformed")
    error = failure(space_for(fake.url))
    assert error.permanent is False and "malformed" in str(error)
    assert fake.request_count == 1


# -- permanent failures ----------------------------------------------------------------------


def test_a_wrong_key_fails_permanently_at_once(fake: FakeOpenAI) -> None:
    wrong = "sk-revoked-key-fedcba9876543210"
    space = space_for(fake.url, api_key=wrong)
    error = failure(space)
    assert error.permanent is True
    assert "HTTP 401" in str(error) and "Incorrect API key provided" in str(error)
    assert fake.request_count == 1


def test_a_401_fault_fails_permanently_until_cleared(fake: FakeOpenAI) -> None:
    fake.always("401")
    assert failure(space_for(fake.url)).permanent is True
    assert failure(space_for(fake.url)).permanent is True
    assert fake.request_count == 2
    fake.clear()
    assert embed(space_for(fake.url), TEXTS).shape == (len(TEXTS), 1536)


def test_a_too_long_input_fails_its_batch_permanently(fake: FakeOpenAI) -> None:
    error = failure(space_for(fake.url), [*TEXTS, "a page __too_long__ to embed"])
    assert error.permanent is True
    assert "HTTP 400" in str(error) and "maximum context length is 8192 tokens" in str(error)
    assert fake.request_count == 1


def test_a_key_echoed_by_the_server_is_hidden(fake: FakeOpenAI) -> None:
    fake.fail_next("400", message=f"bad request from key {KEY}")
    error = failure(space_for(fake.url))
    assert error.permanent is True and "bad request from key ***" in str(error)


def test_a_wrong_vector_length_fails_permanently(fake: FakeOpenAI) -> None:
    fake.fail_next("wrong_length")
    error = failure(space_for(fake.url))
    assert error.permanent is True
    assert "1535" in str(error) and "1536" in str(error)
    assert fake.request_count == 1


def test_a_zero_vector_is_transient(fake: FakeOpenAI) -> None:
    fake.fail_next("wrong_length", length=0)  # empty vectors: of the right length for dims 0
    space = msgspec.structs.replace(space_for(fake.url), dims=0)
    assert failure(space).permanent is False


# -- the fake itself -------------------------------------------------------------------------


def post(fake: FakeOpenAI, body: Any, *, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{fake.url}/embeddings", json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "inputs", [42, [], ["ok", 7], ["ok", ""], ["x"] * 2049, [[1, 2, 3]]], ids=repr
)
def test_the_fake_rejects_input_as_openai_does(fake: FakeOpenAI, inputs: Any) -> None:
    response = post(fake, {"model": "m", "input": inputs})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_fake_checks_the_key(fake: FakeOpenAI) -> None:
    for key in (None, "sk-wrong-0000000000000000"):
        response = post(fake, {"model": "m", "input": "hello"}, key=key)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_fake_speaks_base64(fake: FakeOpenAI) -> None:
    body = {"model": "m", "input": "hello", "encoding_format": "base64", "dimensions": 64}
    response = post(fake, body).json()
    vector = np.frombuffer(base64.b64decode(response["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(vector, fake.vectors(["hello"], 64)[0])
    assert response["usage"]["prompt_tokens"] > 0 and response["object"] == "list"
