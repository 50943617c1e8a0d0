"""Indexes for the sweep of expired memories and for storing each content once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

The sweep deletes expired memories of every user, oldest expiry first, so this index is
by expiry alone (partial: only memories with a TTL). Distributed by user_id, it is local
to each shard like the HNSW index. A write looks up the user's memories by content hash
to store the same content once.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX memories_expiring ON memories (expires_at) WHERE expires_at IS NOT NULL"
    )
    op.execute("CREATE INDEX memories_by_content ON memories (user_id, content_hash)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS memories_by_content")
    op.execute("DROP INDEX IF EXISTS memories_expiring")
