"""Lanes for embedding jobs: interactive work goes ahead of bulk work, users take turns.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

Each job records its ``lane``: ``interactive`` (memories, messages, single documents,
anything written with ``wait``) or ``bulk`` (batches of documents, imports, space fills).
A worker claims the oldest waiting work of the interactive lane first, and within a lane
takes the users in turns (the first waiting item of each user, then the second...), so one
user's hundred thousand items delay another's ten by about one batch.

``embed_state_waiting`` holds the pending jobs in the order a claim reads them: by space,
lane and user, each user's oldest first. A claim finds the users with waiting work by
skipping from one user to the next in it, and reads only the first few items of each.
``job_turns`` remembers, per space and lane, the user the last claim ended with, so the
next claim starts with the user after it.
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE embed_state ADD COLUMN lane text NOT NULL DEFAULT 'interactive' "
        "CHECK (lane IN ('interactive', 'bulk'))"
    )
    op.execute(
        "CREATE INDEX embed_state_waiting "
        "ON embed_state (space, lane, user_id, pending_since, item_id) "
        "WHERE status = 'pending'"
    )
    # Workers' bookkeeping, not a user's data: which user's turn a lane is at.
    op.execute(
        """
        CREATE TABLE job_turns (
            space     text NOT NULL,
            lane      text NOT NULL CHECK (lane IN ('interactive', 'bulk')),
            last_user text NOT NULL,
            PRIMARY KEY (space, lane)
        )
        """
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON job_turns TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS job_turns")
    op.execute("DROP INDEX IF EXISTS embed_state_waiting")
    op.execute("ALTER TABLE embed_state DROP COLUMN lane")
