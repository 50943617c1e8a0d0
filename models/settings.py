"""Settings: one frozen object built from the environment and passed down explicitly.

Each setting is declared once, as a field of the group it belongs to: its type (with its
bounds), its default, and in ``Env`` its variable and one line of doc. ``Settings.from_env``
reads every group; the README's configuration table is rendered from the same declarations
(``settings_table``), and a test holds the two together. The file is long because it
is the one place where every setting is declared.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta

from models.environment import Env, declared, read_field, read_group, shown
from models.errors import ConfigError

G = TypeVar("G", bound=msgspec.Struct)


def _words(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _networks(value: str) -> tuple[str, ...]:
    return tuple(str(ipaddress.ip_network(part, strict=False)) for part in _words(value))


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def _threshold(value: str) -> int | None:
    return None if value.strip().lower() in ("off", "none") else int(value)


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("ENGRAM_HOME") or Path.home() / ".engram").expanduser().resolve()


def _model_cache(env: Mapping[str, str]) -> Path:
    """The cache the environment names, else the default one."""
    return read_field(EncoderOptions, "cache_dir", env)  # type: ignore[no-any-return]


def default_model_cache(env: Mapping[str, str]) -> Path:
    """Where derived model files go: shared by every Engram home of this OS user."""
    base = env.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "engram"


Positive = Meta(ge=1)
Seconds = Meta(gt=0)
PositiveInt = Annotated[int, Positive]
Count = Annotated[int, Meta(ge=0)]


class Server(msgspec.Struct, frozen=True, kw_only=True):
    """The HTTP API"""

    host: Annotated[str, Env("ENGRAM_HOST", "where the API listens")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535), Env("ENGRAM_PORT", "its port")] = 8000
    admin_key: Annotated[
        str | None, Env("ENGRAM_ADMIN_KEY", "the bootstrap admin key", shown="generated")
    ] = None
    cors_origins: Annotated[
        tuple[str, ...],
        Env(
            "ENGRAM_CORS_ORIGINS",
            "comma-separated origins allowed by CORS",
            "none (closed)",
            parse=_words,
        ),
    ] = ()
    key_cache_seconds: Annotated[
        float,
        Meta(ge=0),
        Env(
            "ENGRAM_KEY_CACHE_SECONDS",
            "how long an API process trusts a key it verified (`0`: never)",
        ),
    ] = 60.0
    rate_limit_per_minute: Annotated[
        int,
        Meta(ge=0),
        Env("ENGRAM_RATE_LIMIT_PER_MINUTE", "cost units a key may spend a minute (`0`: no limit)"),
    ] = 6000
    failed_keys_per_minute: Annotated[
        int,
        Meta(ge=0),
        Env(
            "ENGRAM_FAILED_KEYS_PER_MINUTE",
            "requests without a valid key a client address may make a minute (`0`: no limit)",
        ),
    ] = 100
    trusted_proxies: Annotated[
        tuple[str, ...],
        Env(
            "ENGRAM_TRUSTED_PROXIES",
            "comma-separated proxies (addresses or networks) whose `X-Forwarded-For` is believed",
            "none (the peer's address)",
            parse=_networks,
        ),
    ] = ()
    wait_timeout_seconds: Annotated[
        float, Seconds, Env("ENGRAM_WAIT_TIMEOUT_SECONDS", 'longest a `"wait": true` request waits')
    ] = 30.0
    metrics_token: Annotated[
        str | None,
        Env("ENGRAM_METRICS_TOKEN", "a bearer token that may read `/metrics` (admin keys may too)"),
    ] = None
    metrics_public: Annotated[
        bool, Env("ENGRAM_METRICS_PUBLIC", "`true`: `/metrics` needs no token")
    ] = False


class Database(msgspec.Struct, frozen=True, kw_only=True):
    """PostgreSQL"""

    url: Annotated[
        str | None,
        Env(
            "ENGRAM_DATABASE_URL",
            "PostgreSQL with pgvector, as the `engram_app` role",
            shown="embedded",
        ),
    ] = None
    admin_url: Annotated[
        str | None,
        Env(
            "ENGRAM_ADMIN_DATABASE_URL",
            "the tables' owner, for `engram migrate` only",
            shown="`ENGRAM_DATABASE_URL`",
        ),
    ] = None
    app_password: Annotated[
        str | None,
        Env("ENGRAM_APP_DB_PASSWORD", "the login password `engram migrate` gives `engram_app`"),
    ] = None
    embedded_shared_buffers: Annotated[
        Annotated[str, Meta(pattern=r"^[1-9][0-9]*(kB|MB|GB|TB)$")] | None,
        Env(
            "ENGRAM_PG_SHARED_BUFFERS",
            "the embedded PostgreSQL's buffer cache (e.g. `6GB`)",
            shown="a quarter of the memory, 128MB to 8GB",
        ),
    ] = None
    api_pool_size: Annotated[
        int, Positive, Env("ENGRAM_API_POOL_SIZE", "database connections per API process")
    ] = 10
    worker_pool_size: Annotated[
        int, Positive, Env("ENGRAM_WORKER_POOL_SIZE", "database connections per worker process")
    ] = 4
    timeout_seconds: Annotated[
        float, Seconds, Env("ENGRAM_DB_TIMEOUT_SECONDS", "longest wait for a connection (then 503)")
    ] = 5.0
    statement_timeout_seconds: Annotated[
        float,
        Seconds,
        Env("ENGRAM_STATEMENT_TIMEOUT_SECONDS", "longest an API statement may run (then 503)"),
    ] = 60.0
    prepare_threshold: Annotated[
        int | None,
        Env(
            "ENGRAM_PREPARE_THRESHOLD",
            "runs before a statement is prepared server-side; `off`: never",
            parse=_threshold,
        ),
    ] = 5
    listen_url: Annotated[
        str | None,
        Env(
            "ENGRAM_LISTEN_DATABASE_URL",
            "a direct connection for the API's listener (key changes, settled items), when "
            "`ENGRAM_DATABASE_URL` is a pooler in transaction mode (docs/scaling.md)",
            shown="`ENGRAM_DATABASE_URL`",
        ),
    ] = None
    read_url: Annotated[
        str | None,
        Env(
            "ENGRAM_READ_DATABASE_URL",
            "a streaming replica for searches, context and `GET`s, as `engram_app` "
            "(docs/scaling.md)",
        ),
    ] = None
    read_max_wait_seconds: Annotated[
        float,
        Meta(ge=0),
        Env(
            "ENGRAM_READ_MAX_WAIT_SECONDS",
            "longest a read waits for the replica to replay its user's last write "
            "(then it reads the primary)",
        ),
    ] = 0.2
    read_max_lag_seconds: Annotated[
        float,
        Seconds,
        Env(
            "ENGRAM_READ_MAX_LAG_SECONDS",
            "replica lag past which every read goes to the primary",
        ),
    ] = 5.0


class Broker(msgspec.Struct, frozen=True, kw_only=True):
    """Redis"""

    url: Annotated[
        str | None, Env("ENGRAM_REDIS_URL", "Redis for the worker queue", shown="embedded")
    ] = None
    heartbeat_ms: Annotated[
        int, Positive, Env("ENGRAM_BROKER_HEARTBEAT_MS", "dramatiq's Redis heartbeat timeout")
    ] = 60_000


class Worker(msgspec.Struct, frozen=True, kw_only=True):
    """Embedding workers"""

    threads: Annotated[
        int, Positive, Env("ENGRAM_WORKER_THREADS", "dramatiq threads per worker process")
    ] = 2
    max_attempts: Annotated[
        int, Positive, Env("ENGRAM_MAX_ATTEMPTS", "embedding attempts before an item is `failed`")
    ] = 5
    claim_seconds: Annotated[
        float, Seconds, Env("ENGRAM_CLAIM_SECONDS", "how long a dead worker's claim lasts")
    ] = 60.0
    sweep_interval_seconds: Annotated[
        float, Seconds, Env("ENGRAM_SWEEP_INTERVAL_SECONDS", "how often each worker sweeps")
    ] = 15.0
    index_interval_seconds: Annotated[
        float,
        Seconds,
        Env(
            "ENGRAM_INDEX_INTERVAL_SECONDS",
            "how often an idle worker looks for large users' vectors to put into HNSW indexes",
        ),
    ] = 2.0
    requeue_after_seconds: Annotated[
        float,
        Meta(ge=0),
        Env(
            "ENGRAM_REQUEUE_AFTER_SECONDS",
            "how long a pending item waits before the sweep re-sends it",
        ),
    ] = 30.0
    retry_base_seconds: Annotated[
        float,
        Meta(ge=0),
        Env("ENGRAM_RETRY_BASE_SECONDS", "first back-off after a transient error (doubles)"),
    ] = 2.0
    metrics_address: Annotated[
        tuple[str, int] | None,
        Env(
            "ENGRAM_WORKER_METRICS_ADDRESS",
            "`host:port` of each worker's own `/metrics`",
            parse=_address,
        ),
    ] = None


class EncoderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The local model (minilm-384)"""

    model_path: Annotated[
        str | None,
        Env("ENGRAM_MODEL_PATH", "a sentence-transformers model of 384 dims", shown="bundled"),
    ] = None
    batch_size: Annotated[
        int, Positive, Env("ENGRAM_ENCODE_BATCH_SIZE", "texts per model call in the worker")
    ] = 64
    backend: Annotated[
        Literal["onnx", "torch"], Env("ENGRAM_ENCODER_BACKEND", "`onnx` (ONNX Runtime) or `torch`")
    ] = "onnx"
    cache_dir: Annotated[
        Path,
        Env(
            "ENGRAM_MODEL_CACHE",
            "where the ONNX export is kept",
            shown="`~/.cache/engram`",
            default=default_model_cache,
        ),
    ] = msgspec.field(default_factory=lambda: _model_cache(os.environ))


class SearchOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Search"""

    exact_max_rows: Annotated[
        int,
        Meta(ge=0),
        Env("ENGRAM_EXACT_SEARCH_MAX_ROWS", "users up to this many vectors are searched exactly"),
    ] = 20_000
    hnsw_ef_search: Annotated[
        int,
        Meta(ge=1, le=1000),
        Env("ENGRAM_HNSW_EF_SEARCH", "HNSW candidates for larger users"),
    ] = 200
    text_search_config: Annotated[
        str,
        Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}$"),
        Env(
            "ENGRAM_TEXT_SEARCH_CONFIG",
            "PostgreSQL text-search configuration new items' words are indexed in "
            "(`english`, `simple`, `french`...)",
        ),
    ] = "english"


# the built-in spaces' names (models/embedding/spaces.py): an external space takes none
BUILT_IN_SPACES = ("minilm-384", "openai-1536")
# PostgreSQL's identifiers hold 63 bytes: ``vec_<name>_counted_moves`` must fit
EXTERNAL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
MAX_DIMS = {"vector": 2000, "halfvec": 4000}  # what pgvector's HNSW index takes


class ExternalSpace(msgspec.Struct, frozen=True, kw_only=True):
    """A space whose vectors the clients send: its name, length and column type."""

    name: str
    dims: int
    storage: Literal["vector", "halfvec"] = "vector"


def _external_spaces(value: str) -> tuple[ExternalSpace, ...]:
    """``name:dims`` or ``name:dims:halfvec``, comma-separated."""
    spaces: dict[str, ExternalSpace] = {}
    for entry in _words(value):
        name, _, rest = entry.partition(":")
        dims, _, storage = rest.partition(":")
        storage = storage or "vector"
        if not EXTERNAL_NAME.fullmatch(name):
            raise ValueError(
                f"{entry!r}: a name is 1 to 40 lowercase letters, digits and '-' "
                "(not starting with '-')"
            )
        if name in BUILT_IN_SPACES:
            raise ValueError(f"{entry!r}: {name} is a built-in space's name")
        if name in spaces:
            raise ValueError(f"{entry!r}: the space {name} is declared twice")
        if storage not in MAX_DIMS:
            raise ValueError(f"{entry!r}: the storage is 'vector' or 'halfvec'")
        if not dims.isdigit() or not 1 <= int(dims) <= MAX_DIMS[storage]:
            raise ValueError(f"{entry!r}: dims must be 1 to {MAX_DIMS[storage]} as {storage}")
        spaces[name] = ExternalSpace(name=name, dims=int(dims), storage=storage)  # type: ignore[arg-type]
    return tuple(spaces.values())


class SpaceOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Embedding spaces"""

    memory_space: Annotated[
        str | None, Env("ENGRAM_MEMORY_SPACE", "where memories go", shown="`minilm-384`")
    ] = None
    document_space: Annotated[
        str | None,
        Env(
            "ENGRAM_DOCUMENT_SPACE",
            "where documents go",
            shown="`openai-1536` if enabled, else `minilm-384`",
        ),
    ] = None
    external_spaces: Annotated[
        tuple[ExternalSpace, ...],
        Env(
            "ENGRAM_EXTERNAL_SPACES",
            "spaces whose vectors the clients send: comma-separated `name:dims` "
            "(up to 2000) or `name:dims:halfvec` (up to 4000)",
            parse=_external_spaces,
        ),
    ] = ()
    minilm_chunk_tokens: Annotated[
        PositiveInt | None,
        Env("ENGRAM_MINILM_CHUNK_TOKENS", "word pieces a `minilm-384` chunk holds", shown="`256`"),
    ] = None
    minilm_chunk_overlap: Annotated[
        Count | None,
        Env(
            "ENGRAM_MINILM_CHUNK_OVERLAP",
            "word pieces a chunk repeats from the one before",
            shown="`32`",
        ),
    ] = None
    openai_chunk_tokens: Annotated[
        PositiveInt | None,
        Env(
            "ENGRAM_OPENAI_CHUNK_TOKENS",
            "tokens an `openai-1536` chunk holds (estimated)",
            shown="`1000`",
        ),
    ] = None
    openai_chunk_overlap: Annotated[
        Count | None,
        Env(
            "ENGRAM_OPENAI_CHUNK_OVERLAP",
            "tokens a chunk repeats from the one before",
            shown="`100`",
        ),
    ] = None


class OpenAIOptions(msgspec.Struct, frozen=True, kw_only=True):
    """An OpenAI-compatible server (openai-1536)"""

    base_url: Annotated[
        str,
        Env(
            "ENGRAM_OPENAI_BASE_URL",
            "enables `openai-1536`, e.g. `https://api.openai.com/v1`",
            shown="none (space off)",
            parse=lambda url: url.rstrip("/"),
        ),
    ]
    api_key: Annotated[str | None, Env("ENGRAM_OPENAI_API_KEY", "its key, never shown")] = None
    auth_header: Annotated[
        str, Env("ENGRAM_OPENAI_AUTH_HEADER", "the key's header (Azure: `api-key`)")
    ] = "Authorization"
    model: Annotated[str, Env("ENGRAM_OPENAI_MODEL", "the model name sent")] = (
        "text-embedding-3-small"
    )
    dimensions: Annotated[
        PositiveInt | None,
        Env("ENGRAM_OPENAI_DIMENSIONS", "the `dimensions` sent, if any"),
    ] = None
    max_batch_inputs: Annotated[
        int, Positive, Env("ENGRAM_OPENAI_MAX_BATCH_INPUTS", "inputs per request")
    ] = 2048
    max_batch_tokens: Annotated[
        int, Positive, Env("ENGRAM_OPENAI_MAX_BATCH_TOKENS", "tokens per request (estimated)")
    ] = 300_000
    concurrency: Annotated[
        int, Positive, Env("ENGRAM_OPENAI_CONCURRENCY", "requests in flight per process")
    ] = 4
    timeout_seconds: Annotated[
        float, Seconds, Env("ENGRAM_OPENAI_TIMEOUT_SECONDS", "per request")
    ] = 30.0
    max_retries: Annotated[
        int, Meta(ge=0), Env("ENGRAM_OPENAI_MAX_RETRIES", "retries of 429, 5xx and timeouts")
    ] = 5
    backoff_seconds: Annotated[
        float, Meta(ge=0), Env("ENGRAM_OPENAI_BACKOFF_SECONDS", "first back-off (doubles)")
    ] = 1.0


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Input limits (docs/api.md)"""

    max_body_bytes: Annotated[
        int, Positive, Env("ENGRAM_MAX_BODY_BYTES", "largest request body (413 beyond)")
    ] = 10 * 1024 * 1024
    max_import_bytes: Annotated[
        int, Positive, Env("ENGRAM_MAX_IMPORT_BYTES", "largest import body")
    ] = 100 * 1024 * 1024
    max_batch: Annotated[
        int, Positive, Env("ENGRAM_MAX_BATCH", "memories, documents or messages a request")
    ] = 1000
    max_content_chars: Annotated[
        int, Positive, Env("ENGRAM_MAX_CONTENT_CHARS", "characters a memory or message")
    ] = 32_000
    max_document_bytes: Annotated[
        int, Positive, Env("ENGRAM_MAX_DOCUMENT_BYTES", "bytes a document or uploaded file")
    ] = 5 * 1024 * 1024
    max_metadata_bytes: Annotated[
        int, Positive, Env("ENGRAM_MAX_METADATA_BYTES", "metadata size, as JSON")
    ] = 16 * 1024
    max_metadata_depth: Annotated[
        int, Positive, Env("ENGRAM_MAX_METADATA_DEPTH", "metadata nesting")
    ] = 5
    max_k: int = 100  # fixed: the API's schema says so
    max_page: int = 100


class Logging(msgspec.Struct, frozen=True, kw_only=True):
    """Logs"""

    level: Annotated[str, Env("ENGRAM_LOG_LEVEL", "log level", parse=str.upper)] = "INFO"
    format: Annotated[
        Literal["text", "json"],
        Env("ENGRAM_LOG_FORMAT", "`json`: one object a line; `text` for people", parse=str.lower),
    ] = "text"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable, read once from ``ENGRAM_*`` variables."""

    home: Annotated[
        Path,
        Env(
            "ENGRAM_HOME",
            "data directory: the embedded servers' data, the generated admin key",
            shown="`~/.engram`",
            default=_home,
        ),
    ]
    server: Server = Server()
    database: Database = Database()
    broker: Broker = Broker()
    worker: Worker = Worker()
    encoder: EncoderOptions = msgspec.field(default_factory=EncoderOptions)
    search: SearchOptions = SearchOptions()
    spaces: SpaceOptions = SpaceOptions()
    openai: OpenAIOptions | None = None  # the openai-1536 space, when a base URL is set
    limits: Limits = Limits()
    logging: Logging = Logging()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        openai = env.get("ENGRAM_OPENAI_BASE_URL")
        return cls(
            home=read_field(cls, "home", env),
            server=read_group(Server, env),
            database=read_group(Database, env),
            broker=read_group(Broker, env),
            worker=read_group(Worker, env),
            encoder=read_group(EncoderOptions, env),
            search=read_group(SearchOptions, env),
            spaces=read_group(SpaceOptions, env),
            openai=read_group(OpenAIOptions, env) if openai else None,
            limits=read_group(Limits, env),
            logging=read_group(Logging, env),
        )

    def require_urls(self) -> tuple[str, str]:
        """The database and Redis URLs; both must be set by now."""
        if self.database.url is None or self.broker.url is None:
            raise ConfigError(
                "ENGRAM_DATABASE_URL and ENGRAM_REDIS_URL must both be set "
                "(or neither, to let `engram run` start embedded servers)"
            )
        return self.database.url, self.broker.url

    @property
    def admin_key_file(self) -> Path:
        """Where a generated bootstrap admin key is kept (mode 0600)."""
        return self.home / "admin.key"


GROUPS: tuple[type[msgspec.Struct], ...] = (
    Server,
    Database,
    Broker,
    Worker,
    EncoderOptions,
    SearchOptions,
    SpaceOptions,
    OpenAIOptions,
    Limits,
    Logging,
)


def settings_table() -> str:
    """The README's configuration section: a table of every variable, group by group."""
    groups: tuple[type[msgspec.Struct], ...] = (Settings, *GROUPS)
    return "\n\n".join(_table(group) for group in groups) + "\n"


def _table(group: type[msgspec.Struct]) -> str:
    title = "Home" if group is Settings else (group.__doc__ or group.__name__).strip()
    rows = [
        f"| `{setting.name}` | {shown(group, name, setting)} | {setting.doc} |"
        for name, setting in declared(group)
    ]
    header = [f"#### {title}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
    return "\n".join([*header, *rows])
