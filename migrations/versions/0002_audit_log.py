"""Audit log of admin actions: who did what, to what, when.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not per-user data: admins read it whole, newest first, so it is keyed by time order.
    op.execute(
        """
        CREATE TABLE audit_log (
            id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at        timestamptz NOT NULL DEFAULT now(),
            actor     text NOT NULL,
            action    text NOT NULL,
            target    text NOT NULL,
            details   jsonb NOT NULL DEFAULT '{}'::jsonb
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS audit_log")
