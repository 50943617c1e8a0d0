"""The audit log names the end user an action concerned in a column of its own.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-22

``GET /v1/audit?user_id=`` finds what was done to one user: the keys made and revoked for
them, the retries of their items, their erasure. Key and retry entries held that user in
``details``; an erasure, as its ``target``. Both move to ``target_user``, with an index for
the user filter and one for the actor filter (``actor, id``): each finds its entries newest
first without reading the others. The column is not called ``user_id``: the log is the
admins', kept whole after an erasure, not rows of that user (no row-level security applies).
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# the actions whose details held the user before this revision
USER_IN_DETAILS = "('key.create', 'key.revoke', 'job.retry')"


def upgrade() -> None:
    op.execute("ALTER TABLE audit_log ADD COLUMN target_user text")
    op.execute(
        "UPDATE audit_log SET "
        "target_user = CASE WHEN action = 'user.erase' THEN target ELSE details->>'user_id' END, "
        "details = details - 'user_id'"
    )
    op.execute(
        "CREATE INDEX audit_log_by_user ON audit_log (target_user, id) "
        "WHERE target_user IS NOT NULL"
    )
    op.execute("CREATE INDEX audit_log_by_actor ON audit_log (actor, id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS audit_log_by_actor")
    op.execute("DROP INDEX IF EXISTS audit_log_by_user")
    op.execute(
        "UPDATE audit_log SET details = details || jsonb_build_object('user_id', target_user) "
        f"WHERE action IN {USER_IN_DETAILS}"
    )
    op.execute("ALTER TABLE audit_log DROP COLUMN target_user")
