"""Least privilege: an application role without ownership, and row-level security.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

The API and the worker connect as ``engram_app``: not the tables' owner, not a superuser,
no BYPASSRLS. Every user table admits only the rows of the user set for the current
transaction (``engram.user_id``), or every row when a transaction deliberately says so
(``engram.all_users = on``: the worker's claims and admin routes). A query that forgets its
user condition still returns nothing of other users. Migrations run as the owner.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
USER_TABLES = ("memories", "vec_minilm_384")
IN_SCOPE = (
    "(current_setting('engram.all_users', true) = 'on' "
    "OR user_id = current_setting('engram.user_id', true))"
)


def upgrade() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys, audit_log, {', '.join(USER_TABLES)} "
        f"TO {APP_ROLE}"
    )
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    for table in USER_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_by_user ON {table} TO {APP_ROLE} "
            f"USING {IN_SCOPE} WITH CHECK {IN_SCOPE}"
        )


def downgrade() -> None:
    for table in USER_TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_by_user ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    # The role is cluster-wide and may serve other databases: only its grants here go.
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
