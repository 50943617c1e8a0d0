"""Short pending lists for the GIN indexes, so a bulk write never slows later searches.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06

A GIN index takes new entries into a pending list, and every search through the index reads
that whole list until it is merged into the index: by VACUUM, or by the write that grows it
past ``gin_pending_list_limit`` (4 MB by default). On a large table autovacuum comes only
after a fifth of its rows are new, so after an import or a batch of documents the full-text
and metadata indexes' lists held thousands of entries, and every text or filtered search
read them all (a million items: 56,000 pending metadata entries, and a hybrid search of a
small user five times as slow until they were merged). With a 64 kB limit a list holds a few
hundred entries at most, merged by the writes that add them, a little at a time.
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

INDEXES = (
    "memories_fts",
    "chunks_fts",
    "memories_metadata",
    "documents_metadata",
    "memories_metadata_keyed",
    "documents_metadata_keyed",
)
LIMIT_KB = 64


def upgrade() -> None:
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} SET (gin_pending_list_limit = {LIMIT_KB})")
        op.execute(f"SELECT gin_clean_pending_list('{index}'::regclass)")


def downgrade() -> None:
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} RESET (gin_pending_list_limit)")
