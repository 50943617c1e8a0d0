"""The migrated schema can be distributed by ``user_id`` as it is (Citus, docs/scaling.md):
every table holding user rows has ``user_id`` first in its primary key, in every unique
constraint and first in every index a user's queries use; every other table is named below as
a reference or local table, with its reason. A new table that is neither fails here."""

from __future__ import annotations

from typing import Any

import psycopg

# Tables without user rows: Citus would copy each to every node (reference) or keep it on
# the coordinator (local). Each says why it is not per user.
NOT_PER_USER = {
    "alembic_version": "local: the migrations' bookkeeping, on the coordinator only",
    "api_keys": "reference: a key is looked up before its user is known (user_id is whom "
    "it may act on, none for admin keys)",
    "audit_log": "reference: the admins' log; its target user is a column, not its owner",
    "space_fills": "reference: one row per space, read FOR SHARE by every user's writes",
    "job_turns": "reference: one row per space and lane, where the users' turn stands",
}

# Indexes of user tables that do not lead with user_id, each on purpose. Citus needs only
# unique indexes to hold the distribution column; these are per shard, read across users.
NOT_LED_BY_USER = {
    "memories_expiring": "the sweep deletes expired memories of every user, by expires_at",
    "embed_state_waiting": "claims skip from one user's waiting jobs to the next user's",
    "memories_metadata_keyed": "its keys are user and value together (metadata under user_id)",
    "documents_metadata_keyed": "its keys are user and value together (metadata under user_id)",
}
# HNSW indexes take one column, the vector: they cannot be led by user_id. Once distributed,
# each shard has an HNSW graph of its own users' vectors.
VECTOR_METHODS = {"hnsw", "ivfflat"}


def _tables(db: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Every table of the schema (partitions are their parent's), with its columns."""
    rows = db.execute(
        """
        SELECT c.relname, array_agg(a.attname ORDER BY a.attnum)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        GROUP BY c.relname
        """
    ).fetchall()
    return {name: columns for name, columns in rows}


def _indexes(
    db: psycopg.Connection[Any], table: str
) -> list[tuple[str, str, bool, bool, list[str]]]:
    """(name, method, unique, primary, key columns in order) of each index of ``table``."""
    rows = db.execute(
        """
        SELECT i.relname, am.amname, ix.indisunique, ix.indisprimary,
               array(SELECT coalesce(a.attname, '(expression)')
                     FROM unnest(ix.indkey[0:ix.indnkeyatts - 1]) WITH ORDINALITY k(attnum, n)
                     LEFT JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
                     ORDER BY k.n)
        FROM pg_index ix
        JOIN pg_class i ON i.oid = ix.indexrelid
        JOIN pg_am am ON am.oid = i.relam
        WHERE ix.indrelid = %s::regclass
        """,
        [table],
    ).fetchall()
    return [
        (name, method, unique, primary, list(keys)) for name, method, unique, primary, keys in rows
    ]


def test_every_table_is_per_user_or_named_as_reference_or_local(
    db: psycopg.Connection[Any],
) -> None:
    tables = _tables(db)
    assert {"memories", "embed_state", "vec_minilm_384", "chunks", "messages"} <= tables.keys()
    unexplained = {
        name for name, columns in tables.items() if "user_id" not in columns
    } - NOT_PER_USER.keys()
    assert not unexplained, (
        f"{sorted(unexplained)} hold no user_id: give them one, or name each in NOT_PER_USER "
        "with why it is not per user"
    )


def test_user_id_leads_every_key_and_index_of_user_tables(db: psycopg.Connection[Any]) -> None:
    user_tables = [
        name
        for name, columns in _tables(db).items()
        if "user_id" in columns and name not in NOT_PER_USER
    ]
    checked = 0
    for table in user_tables:
        indexes = _indexes(db, table)
        assert any(primary for _, _, _, primary, _ in indexes), f"{table} has no primary key"
        for name, method, unique, primary, keys in indexes:
            if primary or unique:
                # Citus: a unique constraint must hold the distribution column
                assert keys[0] == "user_id", (
                    f"{table}.{name} {keys} is unique without user_id first"
                )
            elif method in VECTOR_METHODS or name in NOT_LED_BY_USER:
                continue
            else:
                assert keys[0] == "user_id", (
                    f"{table}.{name} ({method}) {keys} is not led by user_id"
                )
            checked += 1
    assert checked >= 10


def test_the_allowances_name_indexes_that_exist(db: psycopg.Connection[Any]) -> None:
    names = {
        row[0] for row in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    }
    assert NOT_LED_BY_USER.keys() <= names, "an allowance outlived its index: remove it"
    tables = _tables(db)
    assert NOT_PER_USER.keys() <= tables.keys(), "a listed table is gone: remove it"


def test_no_foreign_keys(db: psycopg.Connection[Any]) -> None:
    """Citus needs foreign keys between distributed tables to hold the distribution column;
    the schema keeps integrity in code, one user per transaction, and declares none."""
    found = db.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public' AND contype = 'f'"
    ).fetchall()
    assert found == []
