"""Jobs remember the request that made them pending, and since when they are pending.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

``request_id`` is the X-Request-ID of the HTTP request that wrote the item (or sent it back
to be embedded): the worker logs it when it embeds, stores or fails the item, so one id
follows an item from the API to the worker. ``pending_since`` is when the job last became
pending; retries leave it alone, so the age of the oldest pending job shows stuck work.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE embed_state ADD COLUMN request_id text")
    op.execute(
        "ALTER TABLE embed_state ADD COLUMN pending_since timestamptz NOT NULL DEFAULT now()"
    )
    # the best guess for jobs already pending: when their row last changed
    op.execute("UPDATE embed_state SET pending_since = updated_at WHERE status = 'pending'")


def downgrade() -> None:
    op.execute("ALTER TABLE embed_state DROP COLUMN pending_since")
    op.execute("ALTER TABLE embed_state DROP COLUMN request_id")
