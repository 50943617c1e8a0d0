"""Documents: batches of documents, split into chunks that are embedded like memories.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

A document's live chunks are those of its ``generation``. New content for a document is
split into chunks of ``pending_generation``, which are embedded while the old ones stay
searchable; when the last of them is ready, one transaction makes them live and deletes the
old ones, so a search never sees half of each. A fill walks memories, then chunks.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
IN_SCOPE = (
    "(current_setting('engram.all_users', true) = 'on' "
    "OR user_id = current_setting('engram.user_id', true))"
)
NAME = "'^[A-Za-z0-9._:@-]{1,128}$'"
TABLES = ("documents", "chunks", "document_batches")
VECTOR_TABLES = ("vec_minilm_384", "vec_openai_1536")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE documents (
            user_id            text NOT NULL CHECK (user_id ~ {NAME}),
            id                 uuid NOT NULL,
            collection         text NOT NULL CHECK (collection ~ {NAME}),
            title              text,
            source             text,
            metadata           jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            space              text NOT NULL,
            content_hash       bytea NOT NULL,
            generation         integer NOT NULL DEFAULT 1,
            pending_generation integer,
            pending_hash       bytea,
            batch_id           uuid NOT NULL,
            created_at         timestamptz NOT NULL DEFAULT now(),
            updated_at         timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, id)
        )
        """
    )
    op.execute("CREATE INDEX documents_by_created ON documents (user_id, created_at DESC, id DESC)")
    op.execute("CREATE INDEX documents_by_content ON documents (user_id, collection, content_hash)")
    op.execute("CREATE INDEX documents_by_batch ON documents (user_id, batch_id)")
    op.execute(
        "CREATE INDEX documents_metadata ON documents USING gin (user_id, metadata jsonb_path_ops)"
    )
    op.execute(
        """
        CREATE TABLE chunks (
            user_id      text NOT NULL,
            id           uuid NOT NULL,
            document_id  uuid NOT NULL,
            generation   integer NOT NULL,
            chunk_index  integer NOT NULL,
            content      text NOT NULL,
            content_hash bytea NOT NULL,
            tokens       integer NOT NULL,
            content_tsv  tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, id),
            UNIQUE (user_id, document_id, generation, chunk_index)
        )
        """
    )
    op.execute("CREATE INDEX chunks_fts ON chunks USING gin (user_id, content_tsv)")
    op.execute(
        """
        CREATE TABLE document_batches (
            user_id    text NOT NULL,
            id         uuid NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, id)
        )
        """
    )
    op.execute("ALTER TABLE space_fills ADD COLUMN phase text NOT NULL DEFAULT 'memory'")
    # search counts a user's vectors of each type, and skips a type they have none of
    for space_table in VECTOR_TABLES:
        op.execute(f"CREATE INDEX {space_table}_by_kind ON {space_table} (user_id, kind)")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {APP_ROLE}")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_by_user ON {table} TO {APP_ROLE} "
            f"USING {IN_SCOPE} WITH CHECK {IN_SCOPE}"
        )


def downgrade() -> None:
    op.execute("DELETE FROM embed_state WHERE kind = 'chunk'")
    for space_table in VECTOR_TABLES:
        op.execute(f"DROP INDEX {space_table}_by_kind")
        op.execute(f"DELETE FROM {space_table} WHERE kind = 'chunk'")
    op.execute("ALTER TABLE space_fills DROP COLUMN phase")
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
