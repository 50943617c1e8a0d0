"""Tiered vector storage: only the vectors of large users are in a space's HNSW index.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

Users with up to ``ENGRAM_EXACT_SEARCH_MAX_ROWS`` vectors are searched exactly and never use
the HNSW index, yet every vector written went into it, at a few hundred a second. Each vector
now says whether it is ``indexed``, and the HNSW index is partial, holding only the indexed
ones. A vector is written unindexed, so a write never pays for the graph, whatever the
table's size; the worker's indexer marks the vectors of users above the exact-search limit
indexed, in batches (``worker/indexer.py``). A search of a large user reads the HNSW index
for its indexed vectors and ``{table}_unindexed`` for the rest, measured exactly.

``vector_counts`` keeps each user's number of unindexed vectors beside their number of
vectors, so a search knows in the same round trip which path serves the user: an exact scan
while many are unindexed (a user who just crossed the limit, a large import), HNSW and the
short unindexed tail otherwise. A statement-level trigger on updates replaces the row
trigger that moved a vector between users or types; it also counts vectors indexed.

Every table with the count triggers changes: the built-in spaces' and external ones'.
Existing vectors stay indexed, as they were, so no search changes path.
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# The vector tables and their spaces: every table whose inserts are counted.
VECTOR_TABLES = """
    SELECT c.relname, split_part(encode(t.tgargs, 'escape'), '\\000', 1)
    FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    WHERE t.tgfoid = 'count_inserted_vectors'::regproc
    ORDER BY c.relname
"""


def vector_tables() -> list[tuple[str, str]]:
    return [(table, space) for table, space in op.get_bind().exec_driver_sql(VECTOR_TABLES)]


def upgrade() -> None:
    op.execute(
        "ALTER TABLE vector_counts "
        "ADD COLUMN unindexed bigint NOT NULL DEFAULT 0 CHECK (unindexed >= 0)"
    )
    op.execute(COUNT_INSERTED)
    op.execute(COUNT_DELETED)
    op.execute(COUNT_UPDATED)
    for table, space in vector_tables():
        op.execute(f"ALTER TABLE {table} ADD COLUMN indexed boolean NOT NULL DEFAULT true")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN indexed SET DEFAULT false")
        _rebuild_hnsw(table, "WHERE indexed")
        op.execute(f"CREATE INDEX {table}_unindexed ON {table} (user_id, kind) WHERE NOT indexed")
        op.execute(f"DROP TRIGGER {table}_counted_moves ON {table}")
        op.execute(
            f"CREATE TRIGGER {table}_counted_changes AFTER UPDATE ON {table} "
            "REFERENCING OLD TABLE AS before NEW TABLE AS after FOR EACH STATEMENT "
            f"EXECUTE FUNCTION count_updated_vectors('{space}')"
        )
    op.execute("DROP FUNCTION count_moved_vector()")


def _rebuild_hnsw(table: str, predicate: str) -> None:
    """Build ``{table}_hnsw`` again as it is defined, over the rows of ``predicate``."""
    index = f"{table}_hnsw"
    query = "SELECT pg_get_indexdef(to_regclass(%(index)s))"
    definition = op.get_bind().exec_driver_sql(query, {"index": index}).scalar_one()
    definition = definition.split(" WHERE ")[0]
    op.execute(f"ALTER INDEX {table}_hnsw RENAME TO {table}_hnsw_old")
    op.execute(f"{definition} {predicate}")
    op.execute(f"DROP INDEX {table}_hnsw_old")


# TG_ARGV[0] is the table's space. Count rows are taken in (user, type) order.
COUNT_INSERTED = """
    CREATE OR REPLACE FUNCTION count_inserted_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO vector_counts AS c (user_id, space, kind, vectors, unindexed)
        SELECT user_id, TG_ARGV[0], kind, count(*), count(*) FILTER (WHERE NOT indexed)
        FROM inserted
        GROUP BY user_id, kind ORDER BY user_id, kind
        ON CONFLICT (user_id, space, kind) DO UPDATE
        SET vectors = c.vectors + EXCLUDED.vectors, unindexed = c.unindexed + EXCLUDED.unindexed;
        RETURN NULL;
    END $$
"""
COUNT_DELETED = """
    CREATE OR REPLACE FUNCTION count_deleted_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE vector_counts c
        SET vectors = c.vectors - d.vectors, unindexed = c.unindexed - d.unindexed
        FROM (SELECT user_id, kind, count(*) AS vectors,
                     count(*) FILTER (WHERE NOT indexed) AS unindexed
              FROM deleted GROUP BY user_id, kind ORDER BY user_id, kind) d
        WHERE c.user_id = d.user_id AND c.space = TG_ARGV[0] AND c.kind = d.kind;
        RETURN NULL;
    END $$
"""
# An update may move a vector to another user or type (an import replacing a vector left by
# an old item), mark it indexed (the indexer), or replace it unindexed (a new embedding). A
# (user, type) that gains vectors gets its count row first if it has none; then every row
# changed takes its difference.
COUNT_UPDATED = """
    CREATE FUNCTION count_updated_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO vector_counts (user_id, space, kind, vectors, unindexed)
        SELECT DISTINCT user_id, TG_ARGV[0], kind, 0, 0 FROM after ORDER BY user_id, kind
        ON CONFLICT (user_id, space, kind) DO NOTHING;
        UPDATE vector_counts c
        SET vectors = c.vectors + d.vectors, unindexed = c.unindexed + d.unindexed
        FROM (SELECT user_id, kind, sum(vectors) AS vectors, sum(unindexed) AS unindexed
              FROM (SELECT user_id, kind, 1 AS vectors, (NOT indexed)::int AS unindexed
                    FROM after
                    UNION ALL
                    SELECT user_id, kind, -1, -(NOT indexed)::int FROM before) changed
              GROUP BY user_id, kind
              HAVING sum(vectors) <> 0 OR sum(unindexed) <> 0
              ORDER BY user_id, kind) d
        WHERE c.user_id = d.user_id AND c.space = TG_ARGV[0] AND c.kind = d.kind;
        RETURN NULL;
    END $$
"""


def downgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION count_moved_vector() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE vector_counts SET vectors = vectors - 1
            WHERE user_id = OLD.user_id AND space = TG_ARGV[0] AND kind = OLD.kind;
            INSERT INTO vector_counts AS c (user_id, space, kind, vectors)
            VALUES (NEW.user_id, TG_ARGV[0], NEW.kind, 1)
            ON CONFLICT (user_id, space, kind) DO UPDATE SET vectors = c.vectors + 1;
            RETURN NULL;
        END $$
        """
    )
    for table, space in vector_tables():
        op.execute(f"DROP TRIGGER {table}_counted_changes ON {table}")
        op.execute(
            f"CREATE TRIGGER {table}_counted_moves AFTER UPDATE ON {table} FOR EACH ROW "
            "WHEN (OLD.kind IS DISTINCT FROM NEW.kind OR OLD.user_id IS DISTINCT FROM NEW.user_id) "
            f"EXECUTE FUNCTION count_moved_vector('{space}')"
        )
        op.execute(f"DROP INDEX {table}_unindexed")
        _rebuild_hnsw(table, "")
        op.execute(f"ALTER TABLE {table} DROP COLUMN indexed")
    op.execute("DROP FUNCTION count_updated_vectors()")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION count_inserted_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO vector_counts AS c (user_id, space, kind, vectors)
            SELECT user_id, TG_ARGV[0], kind, count(*) FROM inserted
            GROUP BY user_id, kind ORDER BY user_id, kind
            ON CONFLICT (user_id, space, kind) DO UPDATE SET vectors = c.vectors + EXCLUDED.vectors;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION count_deleted_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE vector_counts c SET vectors = c.vectors - d.vectors
            FROM (SELECT user_id, kind, count(*) AS vectors FROM deleted
                  GROUP BY user_id, kind ORDER BY user_id, kind) d
            WHERE c.user_id = d.user_id AND c.space = TG_ARGV[0] AND c.kind = d.kind;
            RETURN NULL;
        END $$
        """
    )
    op.execute("ALTER TABLE vector_counts DROP COLUMN unindexed")
