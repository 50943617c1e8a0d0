"""Event time on memories and messages; a session's start; a message's speaker and metadata.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

``occurred_at`` is when a memory or message happened, which the client may say (a
conversation imported a year later still happened then); ``created_at`` stays the time of
writing. Existing rows take their ``created_at``; new ones default to the time of writing.
Searches filter on it (``occurred_after``, ``occurred_before``) and recency weights age from
it. No index serves those filters: like every filter on the items, they are checked on the
items a user's nearest vectors join by primary key (docs/architecture.md, "Search").

A session may carry when it started (``started_at``, optional). A message may carry the
speaker's ``name`` beside its role, and ``metadata`` of its own. A search hit that is a
message's memory names the message: messages get an index by their memory.
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

EVENT_TIMED = ("memories", "messages")


def upgrade() -> None:
    for table in EVENT_TIMED:
        op.execute(f"ALTER TABLE {table} ADD COLUMN occurred_at timestamptz")
        op.execute(f"UPDATE {table} SET occurred_at = created_at")
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN occurred_at SET DEFAULT now(), "
            "ALTER COLUMN occurred_at SET NOT NULL"
        )
    op.execute("ALTER TABLE sessions ADD COLUMN started_at timestamptz")
    op.execute("ALTER TABLE messages ADD COLUMN name text")
    op.execute("ALTER TABLE messages ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb")
    op.execute("CREATE INDEX messages_by_memory ON messages (user_id, memory_id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS messages_by_memory")
    op.execute("ALTER TABLE messages DROP COLUMN metadata")
    op.execute("ALTER TABLE messages DROP COLUMN name")
    op.execute("ALTER TABLE sessions DROP COLUMN started_at")
    op.execute("DROP INDEX IF EXISTS memories_by_occurred")  # made by the first copy of 0017
    for table in reversed(EVENT_TIMED):
        op.execute(f"ALTER TABLE {table} DROP COLUMN occurred_at")
