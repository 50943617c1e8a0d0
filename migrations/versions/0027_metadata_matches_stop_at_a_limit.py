"""Metadata matches that stop at a limit: ``memories_containing`` and ``chunks_containing``
take the most rows to return.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07

A filtered search of a large user first counts the items its filter names, up to one more
than it measures exactly (``SELECTIVE_MAX``), to choose between measuring them all and the
HNSW index. The functions of migration 0022 cannot be inlined (they run as the tables'
owner), so PostgreSQL ran each one to its end before the caller's ``LIMIT``: a filter that
names a tenth of a user of 100,000 memories read all 10,000 of them, spread over as many
pages, to learn that there were more than 5,001.

Each function now takes ``max_rows`` (NULL: no limit) and stops there. Its only plan is
the keyed metadata index: with a limit, the planner would otherwise scan the whole table
in the hope of finding the rows early (every user's rows, for one user's), so sequential
scans are off inside the functions.
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
KEYED = "jsonb_set('{{}}'::jsonb, ARRAY[{row}.user_id], {row}.metadata)"
# the documents asked for, under the transaction's user's id (no user: none)
ASKED = """ARRAY(
    SELECT jsonb_set('{}'::jsonb, ARRAY[u.id], d) FROM unnest(documents) d,
           (SELECT current_setting('engram.user_id', true) AS id) u
    WHERE u.id <> '' AND coalesce(current_setting('engram.all_users', true), '') <> 'on')"""
BODIES = {
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


def _create(function: str, parameters: dict[str, str], body: str, settings: str) -> None:
    declared = ", ".join(f"{name} {kind}" for name, kind in parameters.items())
    signature = ", ".join(parameters.values())
    op.execute(
        f"""
        CREATE FUNCTION {function}({declared})
        RETURNS TABLE (id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER ROWS 100
        SET search_path = pg_catalog, pg_temp {settings}
        AS $${body}$$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {function}({signature}) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {function}({signature}) TO {APP_ROLE}")


def upgrade() -> None:
    for function, body in BODIES.items():
        op.execute(f"DROP FUNCTION {function}(jsonb[])")
        _create(
            function,
            {"documents": "jsonb[]", "max_rows": "bigint"},
            body + "LIMIT max_rows",
            "SET enable_seqscan = off",
        )


def downgrade() -> None:
    for function, body in BODIES.items():
        op.execute(f"DROP FUNCTION {function}(jsonb[], bigint)")
        _create(function, {"documents": "jsonb[]"}, body, "")
