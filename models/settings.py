"""Settings: one frozen object built from the environment and passed down explicitly."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from models.embedding.spaces import MINILM_384, OpenAIOptions, Space, SpaceRegistry, openai_space
from models.errors import ConfigError


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Input limits of the HTTP API (each one documented in docs/api.md)."""

    max_body_bytes: int = 10 * 1024 * 1024
    max_import_bytes: int = 100 * 1024 * 1024  # an import's body (an export, vectors included)
    max_batch: int = 1000
    max_content_chars: int = 32_000
    max_document_bytes: int = 5 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024
    max_metadata_depth: int = 5
    max_k: int = 100
    max_page: int = 100


class EncoderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How the local model (the minilm-384 space) runs: its weights, backend and batches."""

    model_path: str | None = None  # None: the bundled all-MiniLM-L6-v2
    batch_size: int = 64
    # "onnx": ONNX Runtime on a graph exported once into ``cache_dir``; "torch": PyTorch
    backend: str = "onnx"
    cache_dir: Path = msgspec.field(default_factory=lambda: default_model_cache(os.environ))


ENCODER_BACKENDS = ("onnx", "torch")


def default_model_cache(env: Mapping[str, str]) -> Path:
    """Where derived model files go: shared by every Engram home of this OS user."""
    if env.get("ENGRAM_MODEL_CACHE"):
        return Path(env["ENGRAM_MODEL_CACHE"]).expanduser().resolve()
    base = env.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "engram"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable, read once from ``ENGRAM_*`` variables."""

    home: Path
    database_url: str | None = None
    # the tables' owner, for migrations; the API and worker connect as engram_app
    admin_database_url: str | None = None
    app_db_password: str | None = None
    redis_url: str | None = None
    # the embedded PostgreSQL's buffer cache ("6GB"; None: a quarter of the memory)
    embedded_shared_buffers: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: str | None = None
    model_path: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object a line (models/observe/logs.py)
    # "host:port" where each worker process serves its own /metrics (None: it does not)
    worker_metrics_address: tuple[str, int] | None = None
    cors_origins: tuple[str, ...] = ()
    # embedding work
    encode_batch_size: int = 64
    encoder_backend: str = "onnx"
    model_cache: Path = msgspec.field(default_factory=lambda: default_model_cache(os.environ))
    max_attempts: int = 5
    claim_seconds: float = 60.0
    sweep_interval_seconds: float = 15.0
    requeue_after_seconds: float = 30.0
    retry_base_seconds: float = 2.0
    wait_timeout_seconds: float = 30.0
    db_timeout_seconds: float = 5.0
    # connections per process, at most (docs/scaling.md, "Connections")
    api_pool_size: int = 10
    worker_pool_size: int = 4
    # psycopg prepares a statement after this many runs on a connection; None never (for
    # PgBouncer before 1.21 in transaction mode)
    prepare_threshold: int | None = 5
    # cost units a key may spend a minute: 1 a request, +1 a written item, +4 a text query
    rate_limit_per_minute: int = 6000
    # how long an API process trusts a key it verified (0: ask Postgres on every request)
    key_cache_seconds: float = 60.0
    worker_threads: int = 2
    broker_heartbeat_ms: int = 60_000
    # search: users with at most this many vectors are searched exactly
    exact_search_max_rows: int = 20_000
    # HNSW candidate list for larger users (pgvector allows 1..1000): recall against speed
    hnsw_ef_search: int = 800
    # the openai-1536 space, when ENGRAM_OPENAI_BASE_URL is set
    openai: OpenAIOptions | None = None
    openai_model: str = "text-embedding-3-small"
    # where new items go, by kind (None: the built-in defaults, see models/embedding/spaces.py)
    memory_space: str | None = None
    document_space: str | None = None
    # ENGRAM_{MINILM,OPENAI}_CHUNK_{TOKENS,OVERLAP}, where set
    chunk_sizes: dict[str, int] = msgspec.field(default_factory=dict)
    limits: Limits = Limits()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("ENGRAM_HOME") or Path.home() / ".engram").expanduser().resolve()
        try:
            return cls(
                home=home,
                database_url=env.get("ENGRAM_DATABASE_URL") or None,
                admin_database_url=env.get("ENGRAM_ADMIN_DATABASE_URL") or None,
                app_db_password=env.get("ENGRAM_APP_DB_PASSWORD") or None,
                redis_url=env.get("ENGRAM_REDIS_URL") or None,
                embedded_shared_buffers=_memory_size(
                    "ENGRAM_PG_SHARED_BUFFERS", env.get("ENGRAM_PG_SHARED_BUFFERS")
                ),
                host=env.get("ENGRAM_HOST", "127.0.0.1"),
                port=int(env.get("ENGRAM_PORT", "8000")),
                admin_key=env.get("ENGRAM_ADMIN_KEY") or None,
                model_path=env.get("ENGRAM_MODEL_PATH") or None,
                log_level=env.get("ENGRAM_LOG_LEVEL", "INFO").upper(),
                log_format=_log_format(env.get("ENGRAM_LOG_FORMAT") or "text"),
                worker_metrics_address=_address(env.get("ENGRAM_WORKER_METRICS_ADDRESS")),
                cors_origins=_split(env.get("ENGRAM_CORS_ORIGINS", "")),
                encode_batch_size=int(env.get("ENGRAM_ENCODE_BATCH_SIZE", "64")),
                encoder_backend=_choice(
                    "ENGRAM_ENCODER_BACKEND", env.get("ENGRAM_ENCODER_BACKEND"), ENCODER_BACKENDS
                ),
                model_cache=default_model_cache(env),
                max_attempts=int(env.get("ENGRAM_MAX_ATTEMPTS", "5")),
                claim_seconds=float(env.get("ENGRAM_CLAIM_SECONDS", "60")),
                sweep_interval_seconds=float(env.get("ENGRAM_SWEEP_INTERVAL_SECONDS", "15")),
                requeue_after_seconds=float(env.get("ENGRAM_REQUEUE_AFTER_SECONDS", "30")),
                retry_base_seconds=float(env.get("ENGRAM_RETRY_BASE_SECONDS", "2")),
                wait_timeout_seconds=float(env.get("ENGRAM_WAIT_TIMEOUT_SECONDS", "30")),
                db_timeout_seconds=float(env.get("ENGRAM_DB_TIMEOUT_SECONDS", "5")),
                api_pool_size=_positive(
                    "ENGRAM_API_POOL_SIZE", env.get("ENGRAM_API_POOL_SIZE", "10")
                ),
                worker_pool_size=_positive(
                    "ENGRAM_WORKER_POOL_SIZE", env.get("ENGRAM_WORKER_POOL_SIZE", "4")
                ),
                prepare_threshold=_threshold(env.get("ENGRAM_PREPARE_THRESHOLD", "5")),
                rate_limit_per_minute=int(env.get("ENGRAM_RATE_LIMIT_PER_MINUTE", "6000")),
                key_cache_seconds=float(env.get("ENGRAM_KEY_CACHE_SECONDS", "60")),
                worker_threads=int(env.get("ENGRAM_WORKER_THREADS", "2")),
                broker_heartbeat_ms=int(env.get("ENGRAM_BROKER_HEARTBEAT_MS", "60000")),
                exact_search_max_rows=int(env.get("ENGRAM_EXACT_SEARCH_MAX_ROWS", "20000")),
                hnsw_ef_search=int(env.get("ENGRAM_HNSW_EF_SEARCH", "800")),
                openai=_openai_options(env),
                openai_model=env.get("ENGRAM_OPENAI_MODEL") or "text-embedding-3-small",
                memory_space=env.get("ENGRAM_MEMORY_SPACE") or None,
                document_space=env.get("ENGRAM_DOCUMENT_SPACE") or None,
                chunk_sizes={
                    name: int(env[f"ENGRAM_{name}"])
                    for name in (
                        "MINILM_CHUNK_TOKENS",
                        "MINILM_CHUNK_OVERLAP",
                        "OPENAI_CHUNK_TOKENS",
                        "OPENAI_CHUNK_OVERLAP",
                    )
                    if env.get(f"ENGRAM_{name}")
                },
                limits=Limits(
                    max_body_bytes=int(env.get("ENGRAM_MAX_BODY_BYTES", str(10 * 1024 * 1024))),
                    max_import_bytes=int(
                        env.get("ENGRAM_MAX_IMPORT_BYTES", str(100 * 1024 * 1024))
                    ),
                    max_batch=int(env.get("ENGRAM_MAX_BATCH", "1000")),
                    max_content_chars=int(env.get("ENGRAM_MAX_CONTENT_CHARS", "32000")),
                    max_document_bytes=int(
                        env.get("ENGRAM_MAX_DOCUMENT_BYTES", str(5 * 1024 * 1024))
                    ),
                    max_metadata_bytes=int(env.get("ENGRAM_MAX_METADATA_BYTES", "16384")),
                    max_metadata_depth=int(env.get("ENGRAM_MAX_METADATA_DEPTH", "5")),
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid ENGRAM_* setting: {exc}") from exc

    def require_urls(self) -> tuple[str, str]:
        """The database and Redis URLs; both must be set by now."""
        if self.database_url is None or self.redis_url is None:
            raise ConfigError(
                "ENGRAM_DATABASE_URL and ENGRAM_REDIS_URL must both be set "
                "(or neither, to let `engram run` start embedded servers)"
            )
        return self.database_url, self.redis_url

    def space_registry(self) -> SpaceRegistry:
        """The configured embedding spaces, with the default space of each kind."""
        spaces = [self._chunking(MINILM_384, "MINILM")]
        if self.openai is not None:
            spaces.append(
                self._chunking(openai_space(self.openai, model=self.openai_model), "OPENAI")
            )
        chosen = {"memory": self.memory_space, "document": self.document_space}
        names = {s.name for s in spaces}
        for kind, name in chosen.items():
            if name is not None and name not in names:
                raise ConfigError(
                    f"ENGRAM_{kind.upper()}_SPACE={name} is not a configured space "
                    f"(configured: {', '.join(sorted(names))})"
                )
        return SpaceRegistry.with_defaults(tuple(spaces), chosen)

    def _chunking(self, space: Space, prefix: str) -> Space:
        """The space with ENGRAM_<PREFIX>_CHUNK_TOKENS / _CHUNK_OVERLAP applied."""
        tokens = self.chunk_sizes.get(f"{prefix}_CHUNK_TOKENS", space.chunk_tokens)
        overlap = self.chunk_sizes.get(f"{prefix}_CHUNK_OVERLAP", space.chunk_overlap)
        if not 0 < tokens <= space.max_input_tokens or not 0 <= overlap < tokens:
            raise ConfigError(
                f"space {space.name}: chunks of {tokens} tokens with {overlap} of overlap: "
                f"need 0 < tokens <= {space.max_input_tokens} and 0 <= overlap < tokens"
            )
        return msgspec.structs.replace(space, chunk_tokens=tokens, chunk_overlap=overlap)

    @property
    def encoder(self) -> EncoderOptions:
        """How the local model runs."""
        return EncoderOptions(
            model_path=self.model_path,
            batch_size=self.encode_batch_size,
            backend=self.encoder_backend,
            cache_dir=self.model_cache,
        )

    @property
    def admin_key_file(self) -> Path:
        """Where a generated bootstrap admin key is kept (mode 0600)."""
        return self.home / "admin.key"


def _openai_options(env: Mapping[str, str]) -> OpenAIOptions | None:
    base_url = env.get("ENGRAM_OPENAI_BASE_URL")
    if not base_url:
        return None
    dimensions = env.get("ENGRAM_OPENAI_DIMENSIONS")
    return OpenAIOptions(
        base_url=base_url.rstrip("/"),
        api_key=env.get("ENGRAM_OPENAI_API_KEY") or None,
        auth_header=env.get("ENGRAM_OPENAI_AUTH_HEADER") or "Authorization",
        dimensions=int(dimensions) if dimensions else None,
        max_batch_inputs=int(env.get("ENGRAM_OPENAI_MAX_BATCH_INPUTS", "2048")),
        max_batch_tokens=int(env.get("ENGRAM_OPENAI_MAX_BATCH_TOKENS", "300000")),
        concurrency=int(env.get("ENGRAM_OPENAI_CONCURRENCY", "4")),
        timeout_seconds=float(env.get("ENGRAM_OPENAI_TIMEOUT_SECONDS", "30")),
        max_retries=int(env.get("ENGRAM_OPENAI_MAX_RETRIES", "5")),
        backoff_seconds=float(env.get("ENGRAM_OPENAI_BACKOFF_SECONDS", "1")),
    )


def _positive(name: str, value: str) -> int:
    number = int(value)
    if number < 1:
        raise ConfigError(f"{name}={value}: expected at least 1")
    return number


def _threshold(value: str) -> int | None:
    """ENGRAM_PREPARE_THRESHOLD: a count of runs, or "off" (never prepare server-side)."""
    return None if value.strip().lower() in ("off", "none", "") else int(value)


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices`` (the first when unset), else a ConfigError."""
    if not value:
        return choices[0]
    if value not in choices:
        raise ConfigError(f"{name}={value}: expected one of {', '.join(choices)}")
    return value


def _address(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def _memory_size(name: str, value: str | None) -> str | None:
    """A PostgreSQL memory size such as ``512MB`` or ``6GB`` (None when unset)."""
    if not value:
        return None
    if not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB|TB)", value):
        raise ConfigError(f"{name}={value}: expected a size such as 512MB or 6GB")
    return value


def _log_format(value: str) -> str:
    if value.lower() not in ("text", "json"):
        raise ConfigError(f"ENGRAM_LOG_FORMAT={value}: expected text or json")
    return value.lower()


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
