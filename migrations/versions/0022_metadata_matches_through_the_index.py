"""Metadata matches of the scope's user, found through the metadata index.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

As with full-text matches (migration 0019), a metadata condition such as ``@>`` is not
leakproof, so under row-level security it may only run after the policy's condition and
cannot be an index condition: a filtered search of a large user read every one of their
items to find the few a filter names.

``memories_containing`` returns the ids of the transaction's user's memories whose metadata
contains any of the given documents, and ``chunks_containing`` those of the live chunks
of documents whose metadata does, through the ``(user_id, metadata)`` GIN indexes. Like the
text-match functions, they run as the tables' owner and apply the policies' user condition
themselves (a transaction without a user, or one that sees all users, gets nothing), return
only ids, to be joined to rows read under row security, and only the service's role may
call them.
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
FUNCTIONS = {
    "memories_containing": """
        SELECT t.id FROM public.memories t
        WHERE t.user_id = current_setting('engram.user_id', true)
          AND t.metadata @> ANY(documents)
    """,
    "chunks_containing": """
        SELECT k.id FROM public.documents d
        JOIN public.chunks k ON k.user_id = d.user_id AND k.document_id = d.id
                            AND k.generation = d.generation
        WHERE d.user_id = current_setting('engram.user_id', true)
          AND d.metadata @> ANY(documents)
    """,
}


def upgrade() -> None:
    for function, body in FUNCTIONS.items():
        op.execute(
            f"""
            CREATE FUNCTION {function}(documents jsonb[])
            RETURNS TABLE (id uuid)
            LANGUAGE sql STABLE SECURITY DEFINER ROWS 100
            SET search_path = pg_catalog, pg_temp
            AS $${body}$$
            """
        )
        op.execute(f"REVOKE ALL ON FUNCTION {function}(jsonb[]) FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function}(jsonb[]) TO {APP_ROLE}")


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}(jsonb[])")
