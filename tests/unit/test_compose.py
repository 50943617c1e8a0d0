"""The production compose file agrees with the code: commands, settings, start order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.ops.cli import _COMMANDS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text()
ENGRAM_VAR = re.compile(r"\bENGRAM_[A-Z_]+\b")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_TEXT)["services"]


def test_all_services_are_defined(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "migrate", "api", "worker"} <= services.keys()


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_engram_services_run_real_subcommands(services: dict[str, Any], name: str) -> None:
    program, subcommand, *_ = services[name]["command"].split()
    assert program == "engram"
    assert subcommand in _COMMANDS


def test_every_engram_variable_is_read_by_settings() -> None:
    read = set(ENGRAM_VAR.findall((ROOT / "models" / "settings.py").read_text()))
    named = set(ENGRAM_VAR.findall(COMPOSE_TEXT))
    assert named, "compose.yaml configures Engram through ENGRAM_* variables"
    assert named <= read, f"not read by Settings.from_env: {sorted(named - read)}"


def test_api_starts_after_migrations_and_healthy_servers(services: dict[str, Any]) -> None:
    conditions = {dep: spec["condition"] for dep, spec in services["api"]["depends_on"].items()}
    assert conditions == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }


def test_worker_starts_after_migrations(services: dict[str, Any]) -> None:
    depends_on = services["worker"]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["redis"]["condition"] == "service_healthy"


def test_postgres_has_pgvector(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")


def test_healthchecks_define_a_test(services: dict[str, Any]) -> None:
    checked = {name: s["healthcheck"] for name, s in services.items() if "healthcheck" in s}
    assert {"postgres", "redis", "api"} <= checked.keys()
    assert all(check.get("test") for check in checked.values())


def test_api_and_worker_connect_as_the_least_privilege_role(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        url = services[name]["environment"]["ENGRAM_DATABASE_URL"]
        assert url.startswith("postgresql://engram_app:"), f"{name} connects as {url}"
    migrate = services["migrate"]["environment"]
    assert migrate["ENGRAM_ADMIN_DATABASE_URL"].startswith("postgresql://engram:")
    assert "ENGRAM_APP_DB_PASSWORD" in migrate
