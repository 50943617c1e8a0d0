"""Metadata matches read one document at a time: ``memories_containing`` and
``chunks_containing`` scan the keyed metadata index once per document asked for.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07

A filter's ``$in`` of many values asks for as many documents. Matched with ``@> ANY`` of
them, every row the index found was checked again against the documents in turn until one
held, after building the row's keyed metadata: at 50 documents, counting 5,001 items of a
large user took 31 ms, at 100 documents 53 ms. Scanned one document at a time, each row is
checked against its own document only: 9 and 11 ms.

An item whose metadata contains two of the documents (an array holding two of the values)
is now returned once for each; callers that need each item once remove the repeats. The
functions still stop at ``max_rows`` rows (NULL: no limit), and still read only the keyed
metadata index (sequential scans off inside them).
"""

from collections.abc import Callable

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

KEYED = "jsonb_set('{{}}'::jsonb, ARRAY[{row}.user_id], {row}.metadata)"
# the documents asked for, under the transaction's user's id (no user: none)
ASKED = """ARRAY(
    SELECT jsonb_set('{}'::jsonb, ARRAY[u.id], d) FROM unnest(documents) d,
           (SELECT current_setting('engram.user_id', true) AS id) u
    WHERE u.id <> '' AND coalesce(current_setting('engram.all_users', true), '') <> 'on')"""
# each function's matches of ``DOCUMENTS``, an expression of the documents asked for
MATCHES = {
    "memories_containing": f"""
        SELECT t.id FROM public.memories t
        WHERE {KEYED.format(row="t")} @> DOCUMENTS""",
    "chunks_containing": f"""
        SELECT k.id FROM public.documents d
        JOIN public.chunks k ON k.user_id = d.user_id AND k.document_id = d.id
                            AND k.generation = d.generation
        WHERE {KEYED.format(row="d")} @> DOCUMENTS""",
}


def _one_at_a_time(matches: str) -> str:
    return f"""
        SELECT found.id FROM unnest({ASKED}) asked(document)
        CROSS JOIN LATERAL ({matches.replace("DOCUMENTS", "asked.document")}) found
        LIMIT max_rows"""


def _any_of_them(matches: str) -> str:  # migration 0027's
    return matches.replace("DOCUMENTS", f"ANY({ASKED})") + "\n        LIMIT max_rows"


def _replace(body: Callable[[str], str]) -> None:
    for function, matches in MATCHES.items():
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION {function}(documents jsonb[], max_rows bigint)
            RETURNS TABLE (id uuid)
            LANGUAGE sql STABLE SECURITY DEFINER ROWS 100
            SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
            AS $${body(matches)}$$
            """
        )


def upgrade() -> None:
    _replace(_one_at_a_time)


def downgrade() -> None:
    _replace(_any_of_them)
