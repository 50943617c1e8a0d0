"""Settings: each declared once (variable, type, bounds, default, doc), read from the
environment, refused with the variable's name when out of bounds, and documented in the
README exactly as declared. No server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from models.environment import declared
from models.errors import ConfigError
from models.settings import GROUPS, ExternalSpace, Settings, settings_table

ROOT = Path(__file__).resolve().parents[2]
ENGRAM_VAR = re.compile(r"\bENGRAM_[A-Z0-9_]+\b")
# read by the client and the CLI's client commands, not by the service
CLIENT_VARIABLES = {"ENGRAM_URL", "ENGRAM_API_KEY", "ENGRAM_USER"}  # `engram mcp` reads the last
# read only by the test suite and its fuzz target
TEST_VARIABLES = {"ENGRAM_TEST_DATABASE_URL", "ENGRAM_TEST_REDIS_URL",
                  "ENGRAM_TEST_APP_DATABASE_URL", "ENGRAM_FUZZ_EXAMPLES"}  # fmt: skip

DECLARED = {
    setting.name: (group, name)
    for group in (Settings, *GROUPS)
    for name, setting in declared(group)
}


def base(tmp_path: Path) -> dict[str, str]:
    return {"ENGRAM_HOME": str(tmp_path)}


def field_of(settings: Settings, group: type, name: str) -> Any:
    if group is Settings:
        return getattr(settings, name)
    holder = next(
        value for value in msgspec.structs.asdict(settings).values() if isinstance(value, group)
    )
    return getattr(holder, name)


def test_the_readme_shows_every_setting_as_declared():
    readme = (ROOT / "README.md").read_text()
    start = "<!-- settings: rendered by `make docs-settings` from models/settings.py -->\n"
    block = readme.split(start)[1].split("<!-- /settings -->")[0]
    assert block == settings_table(), "run `make docs-settings` and commit README.md"


def test_every_variable_the_service_reads_is_declared():
    read: set[str] = set()
    for package in ("models", "service", "worker"):
        for source in (ROOT / package).rglob("*.py"):
            read |= set(ENGRAM_VAR.findall(source.read_text()))
    assert read - CLIENT_VARIABLES - TEST_VARIABLES <= set(DECLARED)
    assert len(DECLARED) == sum(1 for g in (Settings, *GROUPS) for _ in declared(g))  # no twins


def test_defaults_are_the_declared_ones(tmp_path):
    settings = Settings.from_env(base(tmp_path))
    assert settings.home == tmp_path.resolve()
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert (settings.database.api_pool_size, settings.database.prepare_threshold) == (10, 5)
    assert settings.openai is None and settings.broker.url is None
    assert settings.limits.max_content_chars == 32_000


SAMPLES = {bool: ("true", True), int: ("7", 7), float: ("2.5", 2.5), str: ("seven", "seven")}


@pytest.mark.parametrize("variable", sorted(DECLARED))
def test_each_variable_sets_its_own_field(tmp_path, variable):
    group, name = DECLARED[variable]
    field = next(f for f in msgspec.structs.fields(group) if f.name == name)
    raw, expected = _sample(variable, field.type)
    env = base(tmp_path) | {"ENGRAM_OPENAI_BASE_URL": "http://openai.test/v1", variable: raw}
    assert field_of(Settings.from_env(env), group, name) == expected


def _sample(variable: str, kind: Any) -> tuple[str, Any]:
    special = {
        "ENGRAM_HOME": ("/tmp/engram-home", Path("/tmp/engram-home")),
        "ENGRAM_MODEL_CACHE": ("/tmp/engram-cache", Path("/tmp/engram-cache")),
        "ENGRAM_CORS_ORIGINS": ("https://a.example, https://b.example",
                                ("https://a.example", "https://b.example")),
        "ENGRAM_WORKER_METRICS_ADDRESS": ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        "ENGRAM_PREPARE_THRESHOLD": ("off", None),
        "ENGRAM_PG_SHARED_BUFFERS": ("6GB", "6GB"),
        "ENGRAM_ENCODER_BACKEND": ("torch", "torch"),
        "ENGRAM_LOG_FORMAT": ("JSON", "json"),
        "ENGRAM_LOG_LEVEL": ("debug", "DEBUG"),
        "ENGRAM_OPENAI_BASE_URL": ("http://other.test/v1/", "http://other.test/v1"),
        "ENGRAM_HNSW_EF_SEARCH": ("700", 700),
        "ENGRAM_EXTERNAL_SPACES": ("mine:6", (ExternalSpace(name="mine", dims=6),)),
        "ENGRAM_MINILM_CHUNK_TOKENS": ("200", 200),
        "ENGRAM_MINILM_CHUNK_OVERLAP": ("20", 20),
        "ENGRAM_TRUSTED_PROXIES": ("10.0.0.1, 192.168.1.0/24, fd00::/8",
                                   ("10.0.0.1/32", "192.168.1.0/24", "fd00::/8")),
    }  # fmt: skip
    if variable in special:
        return special[variable]
    base_type = next((t for t in SAMPLES if t in _types_of(kind)), str)
    return SAMPLES[base_type]


def _types_of(kind: Any) -> set[type]:
    origin = getattr(kind, "__origin__", None)
    if origin is not None and hasattr(kind, "__metadata__"):  # Annotated
        return _types_of(origin)
    args = getattr(kind, "__args__", None)
    if args:
        return {t for arg in args for t in _types_of(arg)}
    return {kind} if isinstance(kind, type) else set()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ENGRAM_PORT", "0"),
        ("ENGRAM_PORT", "eighty"),
        ("ENGRAM_API_POOL_SIZE", "0"),
        ("ENGRAM_LOG_FORMAT", "xml"),
        ("ENGRAM_ENCODER_BACKEND", "tensorflow"),
        ("ENGRAM_PG_SHARED_BUFFERS", "6 gigabytes"),
        ("ENGRAM_HNSW_EF_SEARCH", "1001"),
        ("ENGRAM_CLAIM_SECONDS", "0"),
        ("ENGRAM_WORKER_METRICS_ADDRESS", "localhost:http"),
        ("ENGRAM_MAX_BATCH", "-5"),
        ("ENGRAM_TRUSTED_PROXIES", "proxy.example"),
    ],
)
def test_a_value_out_of_bounds_is_refused_naming_its_variable(tmp_path, variable, value):
    with pytest.raises(ConfigError, match=re.escape(f"{variable}={value}")):
        Settings.from_env(base(tmp_path) | {variable: value})


def test_an_empty_variable_means_its_default(tmp_path):
    assert Settings.from_env(base(tmp_path) | {"ENGRAM_PORT": ""}).server.port == 8000
