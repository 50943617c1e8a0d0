"""A space's vector table, its DDL built in one place, and the tables of external spaces
made where they are missing when the schema is brought up to date.

A vector table has what the built-in spaces' tables have from the migrations (0001, 0005,
0007, 0011, 0012, 0014, 0021): the columns and key, the index by user and type, the HNSW
index built with ``ef_construction`` 128 over the indexed vectors and the index of the
unindexed ones (tiered storage), row-level security whose policy tests the user first, the
application role's grants, and the triggers that keep ``vector_counts``.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

from models.db import schema
from models.db.schema import APP_ROLE
from models.embedding.dimensions import check_dimensions
from models.embedding.spaces import Space, SpaceRegistry
from models.errors import ConfigError
from models.settings import Settings

EF_CONSTRUCTION = 128
USER_FIRST = (
    "(user_id = (SELECT current_setting('engram.user_id', true)) "
    "OR (SELECT current_setting('engram.all_users', true) = 'on'))"
)
# one process at a time makes the tables: two starts at once must not both create one
TABLES_LOCK = "engram:vector tables"


def vector_table_statements(space: Space) -> list[sql.Composed]:
    """The DDL that makes ``space``'s vector table, in order."""
    table = sql.Identifier(space.table)

    def named(suffix: str) -> sql.Identifier:
        return sql.Identifier(f"{space.table}_{suffix}")

    parts = {
        "table": table,
        "role": sql.Identifier(APP_ROLE),
        "space": sql.Literal(space.name),  # the count triggers' argument
        "column": sql.SQL("{}({})").format(sql.SQL(space.storage), sql.Literal(space.dims)),
        "ops": sql.SQL(f"{space.storage}_cosine_ops"),
        "ef": sql.Literal(EF_CONSTRUCTION),
        "scope": sql.SQL(USER_FIRST),
        "hnsw": named("hnsw"),
        "by_kind": named("by_kind"),
        "by_user": named("by_user"),
        "unindexed": named("unindexed"),
        "changes": named("counted_changes"),
        "ins": named("counted_in"),
        "outs": named("counted_out"),
    }
    statements = [
        """
        CREATE TABLE {table} (
            user_id      text NOT NULL,
            item_id      uuid NOT NULL,
            kind         text NOT NULL CHECK (kind IN ('memory', 'chunk')),
            content_hash bytea NOT NULL,
            embedding    {column} NOT NULL,
            indexed      boolean NOT NULL DEFAULT false,
            PRIMARY KEY (user_id, item_id)
        )
        """,
        "CREATE INDEX {hnsw} ON {table} USING hnsw (embedding {ops}) WITH (ef_construction = {ef}) "
        "WHERE indexed",
        "CREATE INDEX {by_kind} ON {table} (user_id, kind)",
        "CREATE INDEX {unindexed} ON {table} (user_id, kind) WHERE NOT indexed",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}",
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY {by_user} ON {table} TO {role} USING {scope} WITH CHECK {scope}",
        "CREATE TRIGGER {changes} AFTER UPDATE ON {table} "
        "REFERENCING OLD TABLE AS before NEW TABLE AS after FOR EACH STATEMENT "
        "EXECUTE FUNCTION count_updated_vectors({space})",
        "CREATE TRIGGER {ins} AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_vectors({space})",
        "CREATE TRIGGER {outs} AFTER DELETE ON {table} REFERENCING OLD TABLE AS deleted "
        "FOR EACH STATEMENT EXECUTE FUNCTION count_deleted_vectors({space})",
    ]
    return [sql.SQL(statement).format(**parts) for statement in statements]


def create_missing_tables(admin_url: str, spaces: Iterable[Space]) -> list[str]:
    """Make the vector table of each of ``spaces`` that has none, as the tables' owner, in
    one transaction; return the tables made. A table already there must have the space's
    length and type: a ``ConfigError`` otherwise, and nothing is made."""
    made: list[str] = []
    with psycopg.connect(admin_url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [TABLES_LOCK])
        for space in spaces:
            column = conn.execute(
                "SELECT format_type(atttypid, NULL), atttypmod FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attname = 'embedding' AND NOT attisdropped",
                [space.table],
            ).fetchone()
            if column is None:
                for statement in vector_table_statements(space):
                    conn.execute(statement)
                made.append(space.table)
                continue
            check_dimensions(space, provider_dims=None, column_dims=int(column[1]))
            if column[0] != space.storage:
                raise ConfigError(
                    f"space {space.name}: storage mismatch: configured {space.storage}, "
                    f"the database column {space.table}.embedding is {column[0]}"
                )
    return made


def bring_schema_up_to_date(admin_url: str, settings: Settings) -> None:
    """Migrate to the head revision, then make the missing tables of external spaces."""
    schema.upgrade(admin_url)
    create_missing_tables(admin_url, SpaceRegistry.configured(settings).external())
