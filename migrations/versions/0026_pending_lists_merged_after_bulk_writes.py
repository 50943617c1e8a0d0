"""Short GIN pending lists set per transaction, so a bulk write can merge its own at once.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06

Migration 0023 gave the GIN indexes a 64 kB pending list as a storage parameter, so that
no search reads a long list. A storage parameter overrides the session's setting, so every
write paid for merging small lists: an import of 2,000 memories merged its entries a few
hundred at a time, most of its insert's cost.

The 64 kB limit now comes from the service's connections (``gin_pending_list_limit``, set
in each of its transactions). A bulk write (an import) raises it for its own transaction,
so its entries gather in the list, and merges them all at once before it commits, by
``merge_pending_entries``. That function runs as the tables' owner (PostgreSQL lets only
an index's owner clean its list), merges the lists of the GIN indexes of the named tables
among ``memories``, ``chunks`` and ``documents``, and only the service's role may call it.
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
INDEXES = (
    "memories_fts",
    "chunks_fts",
    "memories_metadata_keyed",
    "documents_metadata_keyed",
)
LIMIT_KB = 64
MERGED_TABLES = ("memories", "chunks", "documents")


def upgrade() -> None:
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} RESET (gin_pending_list_limit)")
    tables = ", ".join(f"'{table}'" for table in MERGED_TABLES)
    op.execute(
        f"""
        CREATE FUNCTION merge_pending_entries(tables text[])
        RETURNS bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT coalesce(sum(gin_clean_pending_list(i.indexrelid)), 0)::bigint
            FROM pg_index i
            JOIN pg_class t ON t.oid = i.indrelid
            JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_am a ON a.oid = c.relam
            WHERE a.amname = 'gin' AND t.relnamespace = 'public'::regnamespace
              AND t.relname = ANY(tables) AND t.relname IN ({tables})
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION merge_pending_entries(text[]) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION merge_pending_entries(text[]) TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS merge_pending_entries(text[])")
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} SET (gin_pending_list_limit = {LIMIT_KB})")
