"""ENGRAM_EXTERNAL_SPACES: what it declares, what it refuses (naming the variable), and the
spaces the registry makes of it. No server."""

from __future__ import annotations

import re

import pytest

from models.embedding.dimensions import check_dimensions
from models.embedding.spaces import MINILM_384, OPENAI_1536, SpaceRegistry, external_space
from models.embedding.tables import vector_table_statements
from models.errors import ConfigError, InvalidInput
from models.settings import BUILT_IN_SPACES, ExternalSpace, Settings
from models.validation import client_vector

VARIABLE = "ENGRAM_EXTERNAL_SPACES"


def settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"ENGRAM_HOME": str(tmp_path), **env})


def test_spaces_are_declared_with_their_dims_and_storage(tmp_path):
    declared = settings(tmp_path, **{VARIABLE: "langchain-6:6, big:3072:halfvec,x1:2000"})
    assert declared.spaces.external_spaces == (
        ExternalSpace(name="langchain-6", dims=6, storage="vector"),
        ExternalSpace(name="big", dims=3072, storage="halfvec"),
        ExternalSpace(name="x1", dims=2000, storage="vector"),
    )
    assert settings(tmp_path).spaces.external_spaces == ()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Upper:6", "lowercase letters, digits and '-'"),
        ("under_score:6", "lowercase letters, digits and '-'"),
        ("-lead:6", "lowercase letters, digits and '-'"),
        ("a" * 41 + ":6", "1 to 40"),
        ("minilm-384:6", "built-in space"),
        ("openai-1536:1536:halfvec", "built-in space"),
        ("twice:6,twice:7", "declared twice"),
        ("nodims", "dims must be 1 to 2000 as vector"),
        ("zero:0", "dims must be 1 to 2000 as vector"),
        ("wide:2001", "dims must be 1 to 2000 as vector"),
        ("wider:4001:halfvec", "dims must be 1 to 4000 as halfvec"),
        ("neg:-3", "dims must be"),
        ("float:6:float32", "'vector' or 'halfvec'"),
    ],
)
def test_a_bad_declaration_stops_the_start_naming_the_variable(tmp_path, value, reason):
    with pytest.raises(ConfigError, match=re.escape(f"{VARIABLE}={value}")) as refused:
        settings(tmp_path, **{VARIABLE: value})
    assert reason in str(refused.value)


def test_the_built_in_names_are_the_registrys():
    assert (MINILM_384.name, OPENAI_1536) == BUILT_IN_SPACES


def test_the_registry_holds_external_spaces_and_may_write_memories_there(tmp_path):
    env = {VARIABLE: "langchain-6:6,big:3072:halfvec", "ENGRAM_MEMORY_SPACE": "langchain-6"}
    registry = SpaceRegistry.configured(settings(tmp_path, **env))
    assert [s.name for s in registry.external()] == ["langchain-6", "big"]
    memory = registry.default_for("memory")
    assert (memory.name, memory.provider, memory.model, memory.external) == (
        "langchain-6",
        "external",
        "external",
        True,
    )
    assert registry.default_for("document").name == MINILM_384.name
    assert registry.get("big").storage == "halfvec" and registry.get("big").table == "vec_big"


def test_documents_cannot_default_to_an_external_space(tmp_path):
    env = {VARIABLE: "mine:6", "ENGRAM_DOCUMENT_SPACE": "mine"}
    with pytest.raises(ConfigError, match="ENGRAM_DOCUMENT_SPACE=mine is an external space"):
        SpaceRegistry.configured(settings(tmp_path, **env))


def test_the_table_is_built_with_identifiers_and_the_space_as_a_literal():
    space = external_space(ExternalSpace(name="odd-name", dims=12, storage="halfvec"))
    text = [statement.as_string() for statement in vector_table_statements(space)]
    assert 'CREATE TABLE "vec_odd_name"' in text[0] and "halfvec(12)" in text[0]
    assert "halfvec_cosine_ops" in text[1] and "ef_construction = 128" in text[1]
    assert all("count_" not in t or "('odd-name')" in t for t in text)


def test_the_dimension_check_of_an_external_space_has_no_provider():
    space = external_space(ExternalSpace(name="mine", dims=6))
    check_dimensions(space, provider_dims=None, column_dims=6)
    with pytest.raises(ConfigError) as refused:
        check_dimensions(space, provider_dims=None, column_dims=7)
    assert str(refused.value) == (
        "space mine: dimension mismatch: configured 6, "
        "the database column vec_mine.embedding has 7 dimensions"
    )


def test_a_client_vector_is_checked_against_its_space():
    space = external_space(ExternalSpace(name="mine", dims=3))
    assert client_vector([3, 0, 4], space).tolist() == pytest.approx([0.6, 0, 0.8])
    for bad, reason in [
        (None, "vector is required"),
        ([1, 2], "vector must have 3 numbers, not 2"),
        ([0, 0, 0], "must not be all zeros"),
        ([float("nan"), 0, 1], "finite"),
        ([float("inf"), 0, 1], "finite"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            client_vector(bad, space)
    with pytest.raises(InvalidInput, match="embeds its items itself"):
        client_vector([0.1] * 384, MINILM_384)
