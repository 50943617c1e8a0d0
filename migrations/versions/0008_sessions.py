"""Sessions and their messages (chat memory).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22

A session's messages are kept in order (``seq``, per session) and each is remembered as a
memory of that session; ``memory_id`` links them.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
IN_SCOPE = (
    "(current_setting('engram.all_users', true) = 'on' "
    "OR user_id = current_setting('engram.user_id', true))"
)
NAME = "'^[A-Za-z0-9._:@-]{1,128}$'"
TABLES = ("sessions", "messages")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE sessions (
            user_id    text NOT NULL CHECK (user_id ~ {NAME}),
            id         text NOT NULL CHECK (id ~ {NAME}),
            title      text,
            metadata   jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, id)
        )
        """
    )
    op.execute("CREATE INDEX sessions_by_created ON sessions (user_id, created_at DESC, id DESC)")
    op.execute(
        """
        CREATE TABLE messages (
            user_id    text NOT NULL,
            session_id text NOT NULL,
            seq        bigint NOT NULL,
            id         uuid NOT NULL,
            role       text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content    text NOT NULL,
            memory_id  uuid,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, session_id, seq),
            UNIQUE (user_id, id)
        )
        """
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {APP_ROLE}")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_by_user ON {table} TO {APP_ROLE} "
            f"USING {IN_SCOPE} WITH CHECK {IN_SCOPE}"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
