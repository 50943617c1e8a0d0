"""A notice on channel ``engram_keys`` whenever an API key is revoked, changed or deleted.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22

Each API process remembers the keys it verified for a minute (service/http/keycache.py), so a
request need not ask Postgres who its key belongs to. Every process listens on
``engram_keys`` and forgets a key when its lookup arrives: a revocation reaches them all
when it commits, whichever process or tool made it. The notice carries the key's lookup
part (never its secret); an empty notice (after a TRUNCATE) means every key. Touching
``last_used_at`` sends nothing.
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

CHANNEL = "engram_keys"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION notify_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('{CHANNEL}', '');
            ELSE
                PERFORM pg_notify('{CHANNEL}', OLD.lookup);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER api_keys_changed "
        "AFTER UPDATE OF lookup, digest, user_id, revoked_at OR DELETE ON api_keys "
        "FOR EACH ROW EXECUTE FUNCTION notify_key_changed()"
    )
    op.execute(
        "CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys "
        "FOR EACH STATEMENT EXECUTE FUNCTION notify_key_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS api_keys_truncated ON api_keys")
    op.execute("DROP TRIGGER IF EXISTS api_keys_changed ON api_keys")
    op.execute("DROP FUNCTION IF EXISTS notify_key_changed()")
