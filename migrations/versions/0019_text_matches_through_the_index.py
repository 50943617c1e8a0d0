"""Full-text matches of the scope's user, found through the full-text index.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

Under row-level security a condition that is not leakproof, such as ``@@``, may only run
after the policy's condition, so it cannot be an index condition: the text side of a hybrid
search read every item of its user to find the few that hold a query's words.

``memories_matching`` and ``chunks_matching`` return the items of the transaction's user
(``engram.user_id``, the setting every row policy reads) whose words match a query in a
configuration, through the ``(user_id, content_tsv)`` GIN index. They run as the tables'
owner, so row security does not apply inside them; the user condition they apply in its
place is the policies' own, and a transaction without a user (or one that sees all users)
gets nothing. They return only ids and word vectors, to be joined to rows read under row
security. Only the service's role may call them.
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
FUNCTIONS = {"memories_matching": "memories", "chunks_matching": "chunks"}


def upgrade() -> None:
    for function, table in FUNCTIONS.items():
        op.execute(
            f"""
            CREATE FUNCTION {function}(query tsquery, config regconfig)
            RETURNS TABLE (id uuid, content_tsv tsvector)
            LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$
                SELECT t.id, t.content_tsv FROM public.{table} t
                WHERE t.user_id = current_setting('engram.user_id', true)
                  AND t.text_config = config
                  AND t.content_tsv @@ query
            $$
            """
        )
        op.execute(f"REVOKE ALL ON FUNCTION {function}(tsquery, regconfig) FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function}(tsquery, regconfig) TO {APP_ROLE}")


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}(tsquery, regconfig)")
