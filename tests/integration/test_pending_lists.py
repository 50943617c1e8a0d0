"""The GIN indexes' pending lists (migration 0026): short in every transaction of the
service, so that no search reads a long one, and an import merges all of its entries into
the indexes before it commits.

How many pages an index holds pending is read by merging them (``gin_clean_pending_list``
answers the pages it merged), as the tables' owner."""

from __future__ import annotations

from typing import Any

import psycopg
from litestar.testing import TestClient
from support.exports import memory_rows, ndjson, sentence

from models.db.pool import PENDING_LIST_KB

GIN_INDEXES = ("memories_fts", "memories_metadata_keyed", "chunks_fts", "documents_metadata_keyed")
PAGE_KB = 8


def merged(db: psycopg.Connection[Any]) -> dict[str, int]:
    """The pages each GIN index held pending, now merged into it."""
    found = {}
    for index in GIN_INDEXES:
        row = db.execute("SELECT gin_clean_pending_list(%s::regclass)", [index]).fetchone()
        assert row is not None
        found[index] = row[0]
    return found


def test_an_import_merges_all_of_its_entries_before_it_commits(
    client: TestClient[Any], db, new_user
):
    user, headers = new_user()
    merged(db)  # what earlier tests left pending
    answer = client.post(
        f"/v1/users/{user}/import",
        content=ndjson(memory_rows(user, 600)),
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"]["memory"] == 600
    assert merged(db) == dict.fromkeys(GIN_INDEXES, 0)
    # what the import wrote is found through the indexes it went into
    found = client.post(
        f"/v1/users/{user}/search",
        json={"query": "w599x3", "mode": "hybrid", "k": 3, "filter": {"n": 599}},
        headers=headers,
    )
    assert found.status_code == 200, found.text
    assert [hit["content"] for hit in found.json()["results"]] == [sentence(599)]


def test_the_services_writes_keep_the_pending_lists_short(client: TestClient[Any], db, new_user):
    user, headers = new_user()
    merged(db)
    for batch in range(10):  # each request a transaction of its own
        memories = [
            {"content": sentence(100 * batch + n), "metadata": {"n": n}} for n in range(100)
        ]
        answer = client.post(
            f"/v1/users/{user}/memories", json={"memories": memories}, headers=headers
        )
        assert answer.status_code in (200, 201, 202), answer.text
    # the entries of 1,000 memories fill many times the limit: the writes merged them as the
    # list passed it, so at most the limit and the last write's entries are left
    pending = merged(db)
    assert pending["memories_fts"] <= PENDING_LIST_KB / PAGE_KB + 4, pending


def test_no_gin_index_sets_a_pending_list_limit_of_its_own(db):
    """An index's storage parameter would override the limit of the service's transactions,
    and the raised limit of an import."""
    rows = db.execute(
        """
        SELECT i.relname, coalesce(i.reloptions, '{}')
        FROM pg_class i JOIN pg_am am ON am.oid = i.relam
        JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE n.nspname = 'public' AND am.amname = 'gin'
        """
    ).fetchall()
    assert {name for name, _ in rows} == set(GIN_INDEXES)
    assert not [options for _, options in rows if any("gin_pending" in o for o in options)]
