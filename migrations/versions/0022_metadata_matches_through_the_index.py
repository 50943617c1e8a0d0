"""Metadata matches of the scope's user, found through an index keyed by user and value.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

As with full-text matches (migration 0019), a metadata condition such as ``@>`` is not
leakproof, so under row-level security it may only run after the policy's condition and
cannot be an index condition: a filtered search of a large user read every one of their
items to find the few a filter names. And the ``(user_id, metadata)`` GIN index intersects
the user's whole posting list with the value's, so even used directly it costs in
proportion to the user's size.

``memories_metadata_keyed`` and ``documents_metadata_keyed`` index each row's metadata under
its user's id (``jsonb_set('{}', ARRAY[user_id], metadata)``, ``jsonb_path_ops``), so one
key stands for one user's one value, and a filter of a large user reads only its matches.
``memories_containing`` returns the ids of the transaction's user's memories whose metadata
contains any of the given documents, and ``chunks_containing`` those of the live chunks of
documents whose metadata does, through them. Like the text-match functions, they run as the
tables' owner, so row security does not apply inside them; the user condition they apply in
its place is the policies' own (the documents are keyed by ``engram.user_id``, and a
transaction without a user, or one that sees all users, gets nothing). They return only
ids, to be joined to rows read under row security, and only the service's role may call
them.
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
KEYED = "jsonb_set('{{}}'::jsonb, ARRAY[{row}.user_id], {row}.metadata)"
# the documents asked for, under the transaction's user's id (no user: none)
ASKED = """ARRAY(
    SELECT jsonb_set('{}'::jsonb, ARRAY[u.id], d) FROM unnest(documents) d,
           (SELECT current_setting('engram.user_id', true) AS id) u
    WHERE u.id <> '' AND coalesce(current_setting('engram.all_users', true), '') <> 'on')"""
FUNCTIONS = {
    "memories_containing": f"""
        SELECT t.id FROM public.memories t
        WHERE {KEYED.format(row="t")} @> ANY({ASKED})
    """,
    "chunks_containing": f"""
        SELECT k.id FROM public.documents d
        JOIN public.chunks k ON k.user_id = d.user_id AND k.document_id = d.id
                            AND k.generation = d.generation
        WHERE {KEYED.format(row="d")} @> ANY({ASKED})
    """,
}


def upgrade() -> None:
    for table in ("memories", "documents"):
        op.execute(
            f"CREATE INDEX {table}_metadata_keyed ON {table} "
            f"USING gin ((jsonb_set('{{}}'::jsonb, ARRAY[user_id], metadata)) jsonb_path_ops)"
        )
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
    for table in ("memories", "documents"):
        op.execute(f"DROP INDEX IF EXISTS {table}_metadata_keyed")
