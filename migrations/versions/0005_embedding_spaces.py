"""Embedding spaces: per-(item, space) embedding state, space fills, the openai-1536 table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

An item can live in several spaces at once (a new space is filled online while the old one
keeps serving searches), so its embedding state moves out of ``memories`` into
``embed_state``: one row per (user, item, space), the outbox the worker claims from.
``space_fills`` records the spaces being (or done being) filled with every existing item;
new items are embedded into those spaces too. The 1536-dimension space stores ``halfvec``:
half the size of ``vector`` for the same recall (docs/benchmarks.md).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
IN_SCOPE = (
    "(current_setting('engram.all_users', true) = 'on' "
    "OR user_id = current_setting('engram.user_id', true))"
)
STATE_COLUMNS = ("status", "attempts", "last_error", "claimed_until", "queued_at")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE embed_state (
            user_id       text NOT NULL,
            item_id       uuid NOT NULL,
            space         text NOT NULL,
            kind          text NOT NULL CHECK (kind IN ('memory', 'chunk')),
            content_hash  bytea NOT NULL,
            status        text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'ready', 'failed')),
            attempts      integer NOT NULL DEFAULT 0,
            last_error    text,
            claimed_until timestamptz,
            queued_at     timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, item_id, space)
        )
        """
    )
    op.execute(
        """
        INSERT INTO embed_state (user_id, item_id, space, kind, content_hash, status, attempts,
                                 last_error, claimed_until, queued_at, updated_at)
        SELECT user_id, id, space, 'memory', content_hash, status, attempts, last_error,
               claimed_until, queued_at, updated_at
        FROM memories
        """
    )
    # The outbox: only pending rows, so the worker's sweep reads a small index.
    op.execute(
        "CREATE INDEX embed_state_pending ON embed_state (user_id, item_id, space) "
        "WHERE status = 'pending'"
    )
    # Dead letters, for the admins' failed-jobs listing.
    op.execute(
        "CREATE INDEX embed_state_failed ON embed_state (user_id, item_id, space) "
        "WHERE status = 'failed'"
    )
    op.execute("DROP INDEX memories_pending")
    op.execute("DROP INDEX memories_failed")
    for column in STATE_COLUMNS:
        op.execute(f"ALTER TABLE memories DROP COLUMN {column}")

    # Not per-user data: one row per space being filled with every existing item.
    op.execute(
        """
        CREATE TABLE space_fills (
            space         text PRIMARY KEY,
            requested_at  timestamptz NOT NULL DEFAULT now(),
            requested_by  text NOT NULL,
            after_user    text,
            after_id      uuid,
            filled_at     timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE vec_openai_1536 (
            user_id      text NOT NULL,
            item_id      uuid NOT NULL,
            kind         text NOT NULL CHECK (kind IN ('memory', 'chunk')),
            content_hash bytea NOT NULL,
            embedding    halfvec(1536) NOT NULL,
            PRIMARY KEY (user_id, item_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX vec_openai_1536_hnsw ON vec_openai_1536 "
        "USING hnsw (embedding halfvec_cosine_ops)"
    )
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON embed_state, space_fills, vec_openai_1536 "
        f"TO {APP_ROLE}"
    )
    for table in ("embed_state", "vec_openai_1536"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_by_user ON {table} TO {APP_ROLE} "
            f"USING {IN_SCOPE} WITH CHECK {IN_SCOPE}"
        )


def downgrade() -> None:
    op.execute("DROP TABLE vec_openai_1536")
    op.execute("DROP TABLE space_fills")
    op.execute(
        """
        ALTER TABLE memories
            ADD COLUMN status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'ready', 'failed')),
            ADD COLUMN attempts integer NOT NULL DEFAULT 0,
            ADD COLUMN last_error text,
            ADD COLUMN claimed_until timestamptz,
            ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now()
        """
    )
    # A memory keeps the state of its own space; other spaces' states have nowhere to go.
    op.execute(
        """
        UPDATE memories m
        SET status = e.status, attempts = e.attempts, last_error = e.last_error,
            claimed_until = e.claimed_until, queued_at = e.queued_at
        FROM embed_state e
        WHERE e.user_id = m.user_id AND e.item_id = m.id AND e.space = m.space
        """
    )
    op.execute("CREATE INDEX memories_pending ON memories (user_id, id) WHERE status = 'pending'")
    op.execute("CREATE INDEX memories_failed ON memories (user_id, id) WHERE status = 'failed'")
    op.execute("DROP TABLE embed_state")
