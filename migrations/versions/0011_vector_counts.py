"""Each user's number of vectors per space and type, kept by triggers.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22

A search chooses its path by the user's number of vectors: an exact scan when they are
few, HNSW otherwise. Counting them at search time cost up to 4 ms (20k index entries);
reading this row costs microseconds, so every search knows its path in the same round
trip. Statement-level triggers on each vector table keep the counts, one update per user
and type per statement (a bulk delete of a million vectors updates each user's row once);
a row trigger moves a vector whose type or user changes (rare: an import replacing a
vector left by an old item). Inserts take the count rows in (user, type) order, and the
worker stores its batches in that order, so two writers do not wait for each other in a
cycle. A new vector table needs these triggers too.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
SPACES = {"minilm-384": "vec_minilm_384", "openai-1536": "vec_openai_1536"}
IN_SCOPE = (
    "((SELECT current_setting('engram.all_users', true)) = 'on' "
    "OR user_id = (SELECT current_setting('engram.user_id', true)))"
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE vector_counts (
            user_id text NOT NULL,
            space   text NOT NULL,
            kind    text NOT NULL,
            vectors bigint NOT NULL CHECK (vectors >= 0),
            PRIMARY KEY (user_id, space, kind)
        )
        """
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON vector_counts TO {APP_ROLE}")
    op.execute("ALTER TABLE vector_counts ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY vector_counts_by_user ON vector_counts TO {APP_ROLE} "
        f"USING {IN_SCOPE} WITH CHECK {IN_SCOPE}"
    )
    # TG_ARGV[0] is the table's space
    op.execute(
        """
        CREATE FUNCTION count_inserted_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
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
        CREATE FUNCTION count_deleted_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE vector_counts c SET vectors = c.vectors - d.vectors
            FROM (SELECT user_id, kind, count(*) AS vectors FROM deleted
                  GROUP BY user_id, kind ORDER BY user_id, kind) d
            WHERE c.user_id = d.user_id AND c.space = TG_ARGV[0] AND c.kind = d.kind;
            RETURN NULL;
        END $$
        """
    )
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
    for space, table in SPACES.items():
        op.execute(
            f"CREATE TRIGGER {table}_counted_moves AFTER UPDATE ON {table} FOR EACH ROW "
            "WHEN (OLD.kind IS DISTINCT FROM NEW.kind "
            "OR OLD.user_id IS DISTINCT FROM NEW.user_id) "
            f"EXECUTE FUNCTION count_moved_vector('{space}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_counted_in AFTER INSERT ON {table} "
            f"REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT "
            f"EXECUTE FUNCTION count_inserted_vectors('{space}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_counted_out AFTER DELETE ON {table} "
            f"REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT "
            f"EXECUTE FUNCTION count_deleted_vectors('{space}')"
        )
        op.execute(
            f"INSERT INTO vector_counts (user_id, space, kind, vectors) "
            f"SELECT user_id, '{space}', kind, count(*) FROM {table} GROUP BY user_id, kind"
        )


def downgrade() -> None:
    for table in SPACES.values():
        op.execute(f"DROP TRIGGER IF EXISTS {table}_counted_in ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_counted_out ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_counted_moves ON {table}")
    op.execute("DROP FUNCTION IF EXISTS count_inserted_vectors()")
    op.execute("DROP FUNCTION IF EXISTS count_deleted_vectors()")
    op.execute("DROP FUNCTION IF EXISTS count_moved_vector()")
    op.execute("DROP TABLE IF EXISTS vector_counts")
