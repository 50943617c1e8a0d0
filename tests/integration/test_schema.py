"""Alembic migrations: up and down on a database of their own, and the schema's principles."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg.types.json import Jsonb
from support.processes import REPO

from models.db import schema

# Indexes read across users on purpose (docs/architecture.md): the sweep's expiry, and
# claims skipping from one user's waiting jobs to the next (migration 0020)
CROSS_USER_INDEXES = {"memories_expiring", "embed_state_waiting"}
# expression indexes whose every key holds the user's id with a value (migration 0022)
USER_KEYED_INDEXES = {"memories_metadata_keyed", "documents_metadata_keyed"}


@pytest.fixture
def scratch_url(servers) -> Iterator[str]:
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(servers.database_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def test_upgrade_head_downgrade_base_and_up_again(scratch_url):
    schema.upgrade(scratch_url)
    assert {"memories", "api_keys", "vec_minilm_384"} <= tables(scratch_url)
    schema.downgrade(scratch_url, "base")
    assert tables(scratch_url) == {"alembic_version"}
    schema.upgrade(scratch_url)
    with psycopg.connect(scratch_url) as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == (schema.head_revision(),)


def engram_migrate(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {"ENGRAM_HOME": str(home), "ENGRAM_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "service.ops.cli", "migrate", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_down_needs_a_target_and_says_so(scratch_url, tmp_path):
    assert engram_migrate(scratch_url, tmp_path).returncode == 0
    refused = engram_migrate(scratch_url, tmp_path, "--down")
    assert refused.returncode == 2
    (said,) = [line for line in refused.stderr.splitlines() if "error" in line]
    assert "--down needs a target revision" in said and "base" in said
    assert "Traceback" not in refused.stderr
    assert {"memories", "api_keys"} <= tables(scratch_url)  # nothing was undone
    down = engram_migrate(scratch_url, tmp_path, "--down", "base")
    assert down.returncode == 0, down.stderr
    assert tables(scratch_url) == {"alembic_version"}


# audit entries as revision 0015 left them: (action, target, details)
AUDIT_0015 = [
    ("key.create", "k1", {"user_id": "alice"}),
    ("key.create", "k2", {"user_id": None}),  # an admin key
    ("job.retry", "i1", {"user_id": "bob", "space": "minilm-384"}),
    ("user.erase", "carol", {"memories": 2, "documents": 0, "vectors": 2}),
    ("space.fill", "openai-1536", {}),
]


def audit_rows(url: str, columns: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT {columns} FROM audit_log ORDER BY id").fetchall()


def test_the_audit_log_moves_its_users_to_a_column_and_back(scratch_url):
    schema.upgrade(scratch_url, "0015")
    with psycopg.connect(scratch_url) as conn:
        for action, target, details in AUDIT_0015:
            conn.execute(
                "INSERT INTO audit_log (actor, action, target, details) VALUES (%s, %s, %s, %s)",
                ["bootstrap", action, target, Jsonb(details)],
            )
    schema.upgrade(scratch_url, "0016")
    assert audit_rows(scratch_url, "target_user, details") == [
        ("alice", {}),
        (None, {}),
        ("bob", {"space": "minilm-384"}),
        ("carol", {"memories": 2, "documents": 0, "vectors": 2}),
        (None, {}),
    ]
    schema.downgrade(scratch_url, "0015")
    assert audit_rows(scratch_url, "action, target, details") == AUDIT_0015


def test_event_times_start_as_creation_times_and_go_back(scratch_url):
    """0017: memories and messages written before it happened when they were written."""
    schema.upgrade(scratch_url, "0016")
    then = "2021-03-04 05:06:07+00"
    with psycopg.connect(scratch_url) as conn:
        memory = conn.execute(
            "INSERT INTO memories (user_id, id, content, space, content_hash, created_at) "
            "VALUES ('u', gen_random_uuid(), 'hi', 'minilm-384', '\\x00', %s) RETURNING id",
            [then],
        ).fetchone()
        conn.execute("INSERT INTO sessions (user_id, id) VALUES ('u', 's')")
        conn.execute(
            "INSERT INTO messages (user_id, session_id, seq, id, role, content, memory_id, "
            "created_at) VALUES ('u', 's', 1, gen_random_uuid(), 'user', 'hi', %s, %s)",
            [memory[0] if memory else None, then],
        )
    schema.upgrade(scratch_url, "0017")
    with psycopg.connect(scratch_url) as conn:
        for table in ("memories", "messages"):
            row = conn.execute(f"SELECT occurred_at = created_at FROM {table}").fetchone()
            assert row == (True,), table
        assert conn.execute(
            "SELECT s.started_at, m.name, m.metadata FROM sessions s, messages m"
        ).fetchone() == (None, None, {})
    schema.downgrade(scratch_url, "0016")
    with psycopg.connect(scratch_url) as conn:
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE column_name IN "
            "('occurred_at', 'started_at') OR (table_name = 'messages' AND column_name = 'name')"
        ).fetchone()
        assert columns == (0,)


def test_user_id_leads_every_primary_key_and_btree_index(db):
    rows = db.execute(
        """
        SELECT c.relname AS tbl, i.relname AS idx, am.amname,
               (SELECT attname FROM pg_attribute
                WHERE attrelid = c.oid AND attnum = ix.indkey[0]) AS first_column
        FROM pg_index ix
        JOIN pg_class c ON c.oid = ix.indrelid
        JOIN pg_class i ON i.oid = ix.indexrelid
        JOIN pg_am am ON am.oid = i.relam
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relname NOT IN ('api_keys', 'alembic_version', 'audit_log', 'space_fills',
                                'job_turns')
        """
    ).fetchall()
    assert rows
    for table, index, method, first_column in rows:
        if method == "hnsw":  # an HNSW index takes only the vector column
            continue
        if index in CROSS_USER_INDEXES or index in USER_KEYED_INDEXES:
            continue
        assert first_column == "user_id", f"{table}.{index} does not lead with user_id"


def test_vectors_live_apart_with_an_hnsw_cosine_index(db):
    definition = db.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'vec_minilm_384' AND indexdef ~ 'hnsw'"
    ).fetchone()
    assert definition is not None and "vector_cosine_ops" in definition[0]
    column = db.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'vec_minilm_384'::regclass AND attname = 'embedding'"
    ).fetchone()
    assert column == ("vector(384)",)
