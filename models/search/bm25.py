"""The text side of hybrid search: BM25 over the user's own items, in SQL."""

from __future__ import annotations

from models.search.sources import FROM, WHERE

# The text side of hybrid mode ranks by BM25 (Okapi, with Lucene's non-negative idf):
# score = sum over the query's terms t found in an item of
#   idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length)),
#   idf(t) = ln(1 + (n - df(t) + 0.5) / (df(t) + 0.5)),
# where n and the average length are the user's (items of this type indexed in this
# configuration, ``text_stats``), df(t) how many of those items hold t, tf how often the
# item holds it. The query's words are parsed in the search's configuration, which drops
# its stop words and stems the rest; its first ``MAX_TEXT_TERMS`` distinct terms count, so
# a query of thousands of words costs no more than one of a few dozen.
# Words many of a large user's items hold (Lucene's "common terms"): a term is common when
# the user has more than ``COMMON_FLOOR`` items of the type and more than ``COMMON_FLOOR``
# of them, and more than ``COMMON_SHARE`` of them, hold the term (more than ``common_at``
# items). Common terms score an item, but do not make it a candidate: the candidates are
# the items holding one of the other terms, or, when every term is common, the items
# holding all of them. So a query with a frequent word does not read tens of thousands of
# items of a large user, and a user of up to ``COMMON_FLOOR`` items is ranked over every
# item holding any term, as plain BM25 ranks.
# How common a term is comes from a sample of the user's items (their first by id), read
# only for users over ``COMMON_FLOOR`` items: big enough that a term held by just enough
# items to be common is expected in ``SAMPLE_HITS`` of it (a twentieth of the user's items
# by default), and at most ``TEXT_SAMPLE`` items; a common term's df is its share of the
# sample times n, every other df is counted exactly.
# The candidates are found once, through the full-text index, by ``memories_matching`` /
# ``chunks_matching`` (migration 0019: under row security a full-text match could not use
# the index, as ``@@`` is not leakproof; those functions apply the policies' user condition
# themselves). tf comes from the positions of the query's terms in the item (its other
# terms filtered out in C: ``setweight`` marks the query's terms, ``ts_filter`` keeps them),
# and its length from the positions of all its terms (``postings``). Every
# candidate is scored before any is joined to its vector and checked against the search's
# conditions, best first, so only about ``limit`` items are read again. A score sums its
# terms in one order (the lexemes' bytes), so equal items score equally every time, and the
# sample is the same for the same items.
MAX_TEXT_TERMS = 64
BM25_K1 = 1.2
BM25_B = 0.75
COMMON_FLOOR = 1000
COMMON_SHARE = 0.01
SAMPLE_HITS = 50
TEXT_SAMPLE = 2000
TEXT = f"""
    WITH terms AS MATERIALIZED (
        SELECT w.lexeme, quote_literal(w.lexeme)::tsquery AS query
        FROM unnest(to_tsvector(%(config)s::regconfig, %(text)s)) AS w
        ORDER BY w.positions[1] LIMIT %(max_terms)s),
    stats AS MATERIALIZED (
        SELECT u.n, u.avgdl, greatest(%(common_floor)s, %(common_share)s * u.n) AS common_at
        FROM (SELECT greatest(coalesce(sum(s.items), 0), 1)::float8 AS n,
                     greatest(coalesce(sum(s.terms)::float8 / nullif(sum(s.items), 0), 1), 1)
                     AS avgdl
              FROM text_stats s
              WHERE s.user_id = %(user_id)s AND s.kind = {{kind}}
                AND s.config = %(config)s::regconfig) u),
    sampled AS MATERIALIZED (
        SELECT b.content_tsv FROM {{base}} b
        WHERE (SELECT n FROM stats) > %(common_floor)s
          AND b.user_id = %(user_id)s AND b.text_config = %(config)s::regconfig
        ORDER BY b.id
        LIMIT (SELECT least(%(sample)s, ceil(%(sample_hits)s * n / common_at))::bigint
               FROM stats)),
    classed AS MATERIALIZED (
        SELECT t.lexeme, c.share * st.n AS estimate,
               st.n > %(common_floor)s AND c.share * st.n > st.common_at AS common
        FROM terms t CROSS JOIN stats st
        CROSS JOIN LATERAL (
            SELECT coalesce(count(*) FILTER (
                       WHERE s.content_tsv @@ t.query)::float8
                   / nullif(count(*), 0), 0) AS share
            FROM sampled s) c),
    holding AS MATERIALIZED (
        SELECT h.id, h.content_tsv FROM {{matching}}(
            (SELECT coalesce(CASE WHEN bool_and(common)
                                  THEN string_agg(quote_literal(lexeme), ' & ')
                                  ELSE string_agg(quote_literal(lexeme), ' | ')
                                       FILTER (WHERE NOT common) END, '')::tsquery
             FROM classed),
            %(config)s::regconfig) h),
    postings AS MATERIALIZED (
        SELECT h.id, u.lexeme, cardinality(u.positions) AS tf, l.length
        FROM holding h
        CROSS JOIN LATERAL (SELECT coalesce(sum(cardinality(positions)), 0) AS length
                            FROM unnest(h.content_tsv)) l
        CROSS JOIN LATERAL unnest(ts_filter(
            setweight(setweight(h.content_tsv, 'D'), 'A', (SELECT array_agg(lexeme) FROM terms)),
            ARRAY['a'::"char"])) u),
    weighed AS MATERIALIZED (
        SELECT c.lexeme, ln(1 + (st.n - d.df + 0.5) / (d.df + 0.5)) AS idf
        FROM classed c
        CROSS JOIN LATERAL (
            SELECT CASE WHEN c.common THEN c.estimate
                        ELSE (SELECT count(*) FROM postings p WHERE p.lexeme = c.lexeme)
                   END AS df) d
        CROSS JOIN stats st),
    ranked AS MATERIALIZED (
        SELECT p.id, sum(w.idf * p.tf * {BM25_K1 + 1} / (p.tf + {BM25_K1} * (
                   1 - {BM25_B} + {BM25_B} * p.length / st.avgdl)) ORDER BY p.lexeme COLLATE "C")
                   AS score
        FROM postings p JOIN weighed w ON w.lexeme = p.lexeme CROSS JOIN stats st
        GROUP BY p.id
        ORDER BY score DESC, p.id)
    SELECT hit.*, p.message_id, p.seq
    FROM (
        SELECT {{kind}} AS type, m.id, r.score, 1 - (v.embedding <=> {{query}}) AS similarity,
               m.content, m.metadata, m.session_id, m.importance, {{document_id}} AS document_id,
               {{chunk_index}} AS chunk_index, m.created_at, m.occurred_at
        {FROM}
        JOIN ranked r ON r.id = v.item_id
        {WHERE}
          AND (%(max_distance)s::float8 IS NULL OR v.embedding <=> {{query}} <= %(max_distance)s)
        ORDER BY r.score DESC, r.id
        LIMIT %(limit)s) hit
    {{placed}}
    ORDER BY hit.score DESC, hit.id
"""
