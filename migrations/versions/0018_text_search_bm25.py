"""Full text in a language, and the per-user statistics BM25 ranks with.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

Each memory and chunk records the text-search configuration (``text_config``: english,
simple, french...) its words were indexed with, and ``content_tsv`` is computed in it: a
language's configuration drops its stop words and reduces words to their stems, so "went"
and "going" are one term and "the" is none. A new item takes the configuration its
connection names (``engram.text_config``, set from ``ENGRAM_TEXT_SEARCH_CONFIG``), else
english; existing items are indexed again in english.

BM25 weighs a query's words by how rare they are among the user's items and normalises by
an item's length. ``text_stats`` keeps, per user, type of item and configuration, the
number of items and the sum of their lengths (in words indexed), updated by statement-level
triggers as items are written, changed and deleted, so a search reads the average length in
one row. How many items hold a word is counted at search time, through the full-text index.
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

APP_ROLE = "engram_app"
TABLES = {"memories": "memory", "chunks": "chunk"}  # table: the type of item it holds
# the user's own rows first, as every policy tests them (migration 0014)
IN_SCOPE = (
    "(user_id = (SELECT current_setting('engram.user_id', true)) "
    "OR (SELECT current_setting('engram.all_users', true) = 'on'))"
)
DEFAULT_CONFIG = (
    "coalesce(nullif(current_setting('engram.text_config', true), ''), 'english')::regconfig"
)


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION text_length(tsvector) RETURNS bigint
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
        'SELECT coalesce(sum(cardinality(positions)), 0) FROM unnest($1)'
        """
    )
    op.execute(
        """
        CREATE TABLE text_stats (
            user_id text NOT NULL,
            kind    text NOT NULL,
            config  regconfig NOT NULL,
            items   bigint NOT NULL CHECK (items >= 0),
            terms   bigint NOT NULL CHECK (terms >= 0),
            PRIMARY KEY (user_id, kind, config)
        )
        """
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON text_stats TO {APP_ROLE}")
    op.execute("ALTER TABLE text_stats ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY text_stats_by_user ON text_stats TO {APP_ROLE} "
        f"USING {IN_SCOPE} WITH CHECK {IN_SCOPE}"
    )
    # TG_ARGV[0] is the table's type of item. Rows are counted out (deleted, or the old side
    # of an update) and in (inserted, the new side), one statement each, in key order.
    op.execute(
        """
        CREATE FUNCTION count_text() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('DELETE', 'UPDATE') THEN
                UPDATE text_stats s SET items = s.items - o.items, terms = s.terms - o.terms
                FROM (SELECT user_id, text_config, count(*) AS items,
                             sum(text_length(content_tsv)) AS terms
                      FROM old_rows GROUP BY user_id, text_config
                      ORDER BY user_id, text_config) o
                WHERE s.user_id = o.user_id AND s.kind = TG_ARGV[0] AND s.config = o.text_config;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                INSERT INTO text_stats AS s (user_id, kind, config, items, terms)
                SELECT user_id, TG_ARGV[0], text_config, count(*), sum(text_length(content_tsv))
                FROM new_rows GROUP BY user_id, text_config ORDER BY user_id, text_config
                ON CONFLICT (user_id, kind, config) DO UPDATE
                SET items = s.items + EXCLUDED.items, terms = s.terms + EXCLUDED.terms;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    for table, kind in TABLES.items():
        op.execute(f"DROP INDEX IF EXISTS {table}_fts")
        op.execute(f"ALTER TABLE {table} DROP COLUMN content_tsv")
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN text_config regconfig NOT NULL DEFAULT 'english'"
        )
        op.execute(f"ALTER TABLE {table} ALTER COLUMN text_config SET DEFAULT {DEFAULT_CONFIG}")
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN content_tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector(text_config, content)) STORED"
        )
        op.execute(f"CREATE INDEX {table}_fts ON {table} USING gin (user_id, content_tsv)")
        op.execute(
            f"INSERT INTO text_stats (user_id, kind, config, items, terms) "
            f"SELECT user_id, '{kind}', text_config, count(*), sum(text_length(content_tsv)) "
            f"FROM {table} GROUP BY user_id, text_config"
        )
        op.execute(
            f"CREATE TRIGGER {table}_text_in AFTER INSERT ON {table} "
            f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION count_text('{kind}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_text_out AFTER DELETE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION count_text('{kind}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_text_changed AFTER UPDATE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION count_text('{kind}')"
        )


def downgrade() -> None:
    for table in TABLES:
        for trigger in ("text_in", "text_out", "text_changed"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{trigger} ON {table}")
        op.execute(f"DROP INDEX IF EXISTS {table}_fts")
        op.execute(f"ALTER TABLE {table} DROP COLUMN content_tsv")
        op.execute(f"ALTER TABLE {table} DROP COLUMN text_config")
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN content_tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED"
        )
        op.execute(f"CREATE INDEX {table}_fts ON {table} USING gin (user_id, content_tsv)")
    op.execute("DROP FUNCTION IF EXISTS count_text()")
    op.execute("DROP TABLE IF EXISTS text_stats")
    op.execute("DROP FUNCTION IF EXISTS text_length(tsvector)")
