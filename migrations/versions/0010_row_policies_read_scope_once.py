"""Row policies read the scope once per statement, not once per row.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

Every ``<table>_by_user`` policy called ``current_setting()`` twice for each row it
looked at. Wrapped in scalar subqueries, the settings become init plans: evaluated once
per statement, and ``user_id = (SELECT ...)`` can serve as an index condition. Measured on
the 1M-vector benchmark data, as engram_app: counting a large user's vectors went from
9.8 ms to the superuser's 2.9 ms. The rule itself is unchanged.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PER_ROW = (
    "(current_setting('engram.all_users', true) = 'on' "
    "OR user_id = current_setting('engram.user_id', true))"
)
ONCE = (
    "((SELECT current_setting('engram.all_users', true)) = 'on' "
    "OR user_id = (SELECT current_setting('engram.user_id', true)))"
)


def _policies() -> list[tuple[str, str]]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT tablename, policyname FROM pg_policies "
        "WHERE schemaname = 'public' AND policyname = tablename || '_by_user' ORDER BY 1"
    )
    return [(table, policy) for table, policy in rows]


def _set(scope: str) -> None:
    for table, policy in _policies():
        op.execute(f"ALTER POLICY {policy} ON {table} USING {scope} WITH CHECK {scope}")


def upgrade() -> None:
    _set(ONCE)


def downgrade() -> None:
    _set(PER_ROW)
