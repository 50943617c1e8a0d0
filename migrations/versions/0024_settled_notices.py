"""A notice on channel ``engram_settled`` as an item's embedding leaves ``pending``.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06

A write with ``"wait": true`` answers once its items are embedded or failed
(service/http/wait.py). The notice carries the md5 of the item's user id (not the id
itself), and the API process holding a request of that user's reads its items again at
once, instead of finding out at its next poll. Notices are sent at commit, one per user and
transaction however many of their items settled; claims, retries and releases, which leave
an item pending, send none.
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

CHANNEL = "engram_settled"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION notify_item_settled() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', md5(NEW.user_id));
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER embed_state_settled AFTER UPDATE OF status ON embed_state "
        "FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status <> 'pending') "
        "EXECUTE FUNCTION notify_item_settled()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS embed_state_settled ON embed_state")
    op.execute("DROP FUNCTION IF EXISTS notify_item_settled()")
