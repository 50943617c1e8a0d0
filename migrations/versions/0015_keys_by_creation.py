"""Keys are listed a page at a time, newest first: an index in that order.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-22

An application may hold a key per end user, so ``GET /v1/keys`` pages by ``(created_at,
id)``; with this index each page reads its own rows only, however many keys there are.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX api_keys_by_creation ON api_keys (created_at, id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS api_keys_by_creation")
