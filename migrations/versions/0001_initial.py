"""Initial schema: keys, memories, and the minilm-384 vector space.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Principles (docs/architecture.md): user_id leads every primary key and every index a
per-user query uses, so tables can later be distributed by user_id; vectors live in one
table per embedding space, apart from content; Postgres holds each item's embedding state.
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE api_keys (
            id           uuid PRIMARY KEY,
            lookup       text NOT NULL UNIQUE,
            digest       bytea NOT NULL,
            user_id      text CHECK (user_id ~ '^[A-Za-z0-9._:@-]{1,128}$'),
            created_at   timestamptz NOT NULL DEFAULT now(),
            revoked_at   timestamptz,
            last_used_at timestamptz
        )
        """
    )
    op.execute(
        r"""
        CREATE TABLE memories (
            user_id       text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._:@-]{1,128}$'),
            id            uuid NOT NULL,
            content       text NOT NULL,
            metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
            session_id    text CHECK (session_id ~ '^[A-Za-z0-9._:@-]{1,128}$'),
            importance    double precision CHECK (importance BETWEEN 0 AND 1),
            space         text NOT NULL,
            content_hash  bytea NOT NULL,
            status        text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'ready', 'failed')),
            attempts      integer NOT NULL DEFAULT 0,
            last_error    text,
            claimed_until timestamptz,
            queued_at     timestamptz NOT NULL DEFAULT now(),
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            expires_at    timestamptz,
            PRIMARY KEY (user_id, id)
        )
        """
    )
    op.execute("CREATE INDEX memories_by_created ON memories (user_id, created_at DESC, id DESC)")
    # The outbox: only pending rows, so the worker's sweep reads a small index.
    op.execute("CREATE INDEX memories_pending ON memories (user_id, id) WHERE status = 'pending'")
    # Dead letters, for the admins' failed-jobs listing.
    op.execute("CREATE INDEX memories_failed ON memories (user_id, id) WHERE status = 'failed'")
    op.execute(
        """
        CREATE TABLE vec_minilm_384 (
            user_id      text NOT NULL,
            item_id      uuid NOT NULL,
            kind         text NOT NULL CHECK (kind IN ('memory', 'chunk')),
            content_hash bytea NOT NULL,
            embedding    vector(384) NOT NULL,
            PRIMARY KEY (user_id, item_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX vec_minilm_384_hnsw ON vec_minilm_384 "
        "USING hnsw (embedding vector_cosine_ops)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS vec_minilm_384")
    op.execute("DROP TABLE IF EXISTS memories")
    op.execute("DROP TABLE IF EXISTS api_keys")
    op.execute("DROP EXTENSION IF EXISTS vector")
