"""Search indexes: full-text for hybrid search, GIN on metadata for filters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Both lead with user_id (btree_gin makes a text column a GIN key), like every index a
per-user query uses. The text configuration is 'simple': no stemming and no stop words, so
names and codes match exactly, in any language.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.execute(
        "ALTER TABLE memories ADD COLUMN content_tsv tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED"
    )
    op.execute("CREATE INDEX memories_fts ON memories USING gin (user_id, content_tsv)")
    op.execute(
        "CREATE INDEX memories_metadata ON memories USING gin (user_id, metadata jsonb_path_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS memories_metadata")
    op.execute("DROP INDEX IF EXISTS memories_fts")
    op.execute("ALTER TABLE memories DROP COLUMN IF EXISTS content_tsv")
    op.execute("DROP EXTENSION IF EXISTS btree_gin")
