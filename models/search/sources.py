"""Where a search's items come from, and what every search statement asks of them: the
columns of a hit, the join of a vector to its item, each type of item's source (memories,
or the live chunks of documents), and the conditions on the items (``statements.py``,
``bm25.py``).
"""

from __future__ import annotations

from models.store.items import LIVE_MEMORY

COLUMNS = """
    {kind} AS type, m.id, m.content, m.metadata, m.session_id, m.importance,
    {document_id} AS document_id, {chunk_index} AS chunk_index, m.created_at, m.occurred_at
"""
# Which message a hit (``hit``: the statement's best rows, after their limit) is, when it is
# a memory of a session: the message's id and ``seq`` (``models.search.turns``). A memory
# remembered for two messages (written before each message had a memory of its own) is the
# first of them. An aggregate, not an ORDER BY: the HNSW path's settings turn sorts off.
PLACED = {
    "memory": """
    LEFT JOIN LATERAL (
        SELECT (array_agg(t.id ORDER BY t.seq, t.id))[1] AS message_id, min(t.seq) AS seq
        FROM messages t
        WHERE hit.session_id IS NOT NULL AND t.user_id = %(user_id)s AND t.memory_id = hit.id
    ) p ON true""",
    "chunk": """
    CROSS JOIN (SELECT NULL::uuid AS message_id, NULL::bigint AS seq) p""",
}
# An item has at most one vector a space. A memory whose content was edited keeps its old
# vector until the new one replaces it: it stays findable (by its old meaning) meanwhile.
FROM = """
    FROM {table} v
    JOIN {source} m ON m.user_id = v.user_id AND m.id = v.item_id
"""
# What every statement asks of the items themselves, beside the filter on their metadata.
ITEM_CONDITIONS = f"""{LIVE_MEMORY}
      AND (%(session_id)s::text IS NULL OR m.session_id = %(session_id)s)
      AND (%(after)s::timestamptz IS NULL OR m.created_at >= %(after)s)
      AND (%(before)s::timestamptz IS NULL OR m.created_at < %(before)s)
      AND (%(occurred_after)s::timestamptz IS NULL OR m.occurred_at >= %(occurred_after)s)
      AND (%(occurred_before)s::timestamptz IS NULL OR m.occurred_at < %(occurred_before)s)
      AND {{filter}}"""
WHERE = f"""
    WHERE {{user_match}} AND v.kind = {{kind}}
      AND {ITEM_CONDITIONS}
"""
# Where each type of item comes from, with the same columns. A chunk is live while it
# belongs to its document's current generation; it carries its document's metadata.
SOURCES = {
    "memory": {
        "source": "memories",
        "base": "memories",
        "matching": "memories_matching",
        "containing": "memories_containing",
        "document_id": "NULL::uuid",
        "chunk_index": "NULL::int",
    },
    "chunk": {
        "source": """(
            SELECT k.user_id, k.id, k.content, k.content_hash, d.metadata,
                   NULL::text AS session_id, NULL::float8 AS importance, k.document_id,
                   k.chunk_index, k.created_at, d.created_at AS occurred_at,
                   NULL::timestamptz AS expires_at, k.content_tsv, k.text_config
            FROM chunks k
            JOIN documents d ON d.user_id = k.user_id AND d.id = k.document_id
                            AND d.generation = k.generation)""",
        "base": "chunks",
        "matching": "chunks_matching",
        "containing": "chunks_containing",
        "document_id": "m.document_id",
        "chunk_index": "m.chunk_index",
    },
}
