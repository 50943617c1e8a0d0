"""Drop the metadata indexes no statement of the service can use.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06

``memories_metadata`` and ``documents_metadata`` index ``(user_id, metadata)``. Under row
security, ``@>`` is not leakproof, so PostgreSQL never uses them for a filter of the
service's role; since migration 0022 a filter's candidates come from the indexes keyed by
user and value instead (``memories_containing``, ``chunks_containing``). Every write still
paid for them: a tenth of an import's insert of memories.
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

TABLES = ("memories", "documents")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP INDEX IF EXISTS {table}_metadata")


def downgrade() -> None:
    for table in TABLES:
        op.execute(
            f"CREATE INDEX {table}_metadata ON {table} USING gin (user_id, metadata jsonb_path_ops)"
            " WITH (gin_pending_list_limit = 64)"
        )
