"""The backstop: row-level security under a least-privilege role, scoped per transaction."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb
from support.api import add_memories

from models.db.pool import create_pool
from models.db.scope import run_scoped, set_scope

USER_TABLES = ("memories", "embed_state", "vec_minilm_384")


@pytest.fixture
def app_db(servers):
    if servers.app_url == servers.database_url:
        pytest.skip("external test database without a separate engram_app URL")
    with psycopg.connect(servers.app_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def two_users(client, new_user, worker):
    alice, alice_headers = new_user()
    bob, bob_headers = new_user()
    add_memories(client, alice, alice_headers, ["alice's secret: the vault code is 1234"])
    add_memories(client, bob, bob_headers, ["bob's note: buy milk"])
    return alice, bob


def test_the_application_role_is_least_privilege(app_db):
    role = app_db.execute(
        """
        SELECT current_user, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb,
               pg_has_role(current_user, t.tableowner, 'USAGE')
        FROM pg_roles r, pg_tables t
        WHERE r.rolname = current_user AND t.tablename = 'memories'
        """
    ).fetchone()
    assert role == ("engram_app", False, False, False, False, False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_db.execute("DROP TABLE memories")


def test_a_query_missing_its_user_condition_sees_only_the_scoped_user(app_db, two_users):
    alice, _ = two_users
    with app_db.transaction():
        app_db.execute("SELECT set_config('engram.user_id', %s, true)", [alice])
        seen = {
            table: {row[0] for row in app_db.execute(f"SELECT user_id FROM {table}")}
            for table in USER_TABLES
        }
    assert seen == {"memories": {alice}, "embed_state": {alice}, "vec_minilm_384": {alice}}
    # no scope at all: nothing
    for table in USER_TABLES:
        assert app_db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_every_table_holding_user_rows_has_row_security(db):
    unprotected = db.execute(
        """
        SELECT c.relname FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id'
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity
          AND c.relname <> 'api_keys'
        """
    ).fetchall()
    assert unprotected == []


def test_every_user_policy_tests_the_row_user_first(db):
    """The user comparison first: for a user's own rows it alone decides (migration 0014,
    half the per-row cost of the old order). A policy written another way is a regression."""
    policies = db.execute(
        "SELECT tablename, qual, with_check FROM pg_policies WHERE schemaname = 'public'"
    ).fetchall()
    assert {table for table, _, _ in policies} >= {"memories", "vec_minilm_384", "vector_counts"}
    for table, qual, with_check in policies:
        assert qual == with_check, table
        assert qual.startswith("((user_id = ( SELECT current_setting('engram.user_id'"), qual
        assert "current_setting('engram.all_users'::text, true) = 'on'" in qual, qual


def test_the_all_users_scope_sees_every_user_and_an_empty_scope_none(app_db, two_users):
    alice, bob = two_users
    with app_db.transaction():
        app_db.execute("SELECT set_config('engram.all_users', 'on', true)")
        users = {row[0] for row in app_db.execute("SELECT user_id FROM memories")}
    assert {alice, bob} <= users
    with app_db.transaction():
        app_db.execute(
            "SELECT set_config('engram.user_id', '', true), "
            "set_config('engram.all_users', 'off', true)"
        )
        assert app_db.execute("SELECT count(*) FROM memories").fetchone() == (0,)


def test_rows_of_another_user_cannot_be_written_or_changed(app_db, two_users):
    alice, bob = two_users
    with pytest.raises(psycopg.errors.InsufficientPrivilege), app_db.transaction():
        app_db.execute("SELECT set_config('engram.user_id', %s, true)", [alice])
        app_db.execute(
            "INSERT INTO memories (user_id, id, content, space, content_hash) "
            "VALUES (%s, %s, 'planted', 'minilm-384', '\\x00')",
            [bob, uuid.uuid4()],
        )
    with app_db.transaction():
        app_db.execute("SELECT set_config('engram.user_id', %s, true)", [alice])
        changed = app_db.execute("UPDATE memories SET content = 'x' WHERE user_id = %s", [bob])
        deleted = app_db.execute("DELETE FROM vec_minilm_384 WHERE user_id = %s", [bob])
        assert changed.rowcount == 0 and deleted.rowcount == 0


def test_the_scope_never_travels_to_the_next_user_of_a_pooled_connection(servers, two_users):
    alice, _ = two_users

    async def count_all(conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute("SELECT count(*) FROM memories")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def main() -> tuple[int, int, int]:
        pool = create_pool(servers.app_url, min_size=1, max_size=1)  # one connection, reused
        await pool.open(wait=True)
        try:
            scoped = await run_scoped(pool, alice, count_all)
            async with pool.connection() as conn:  # same connection, no scope set
                unscoped = await count_all(conn)
                async with conn.transaction():
                    await set_scope(conn, "nobody")
                    other = await count_all(conn)
            return scoped, unscoped, other
        finally:
            await pool.close()

    assert asyncio.run(main()) == (1, 0, 0)


def _matching(app_db, function: str, words: str, scope: dict[str, str]) -> set[str]:
    """The contents ``function`` finds for ``words`` (english) in a transaction of ``scope``."""
    with app_db.transaction():
        for name, value in scope.items():
            app_db.execute("SELECT set_config(%s, %s, true)", [name, value])
        ids = [
            row[0]
            for row in app_db.execute(
                f"SELECT id FROM {function}(to_tsquery('english', %s), 'english')", [words]
            )
        ]
        app_db.execute("SELECT set_config('engram.all_users', 'on', true)")
        rows = app_db.execute("SELECT content FROM memories WHERE id = ANY(%s)", [ids])
        return {row[0] for row in rows}


def test_the_text_match_functions_find_only_the_scoped_users_items(app_db, two_users):
    """memories_matching / chunks_matching run as the owner (so the full-text index serves
    the match) and apply the policies' user condition themselves."""
    alice, bob = two_users
    words = "vault | milk"
    assert _matching(app_db, "memories_matching", words, {"engram.user_id": alice}) == {
        "alice's secret: the vault code is 1234"
    }
    assert _matching(app_db, "memories_matching", words, {"engram.user_id": bob}) == {
        "bob's note: buy milk"
    }
    # a transaction that sees all users, or none, finds nothing through them
    assert _matching(app_db, "memories_matching", words, {"engram.all_users": "on"}) == set()
    assert _matching(app_db, "memories_matching", words, {}) == set()
    assert _matching(app_db, "chunks_matching", words, {"engram.user_id": alice}) == set()


def _containing(
    app_db, function: str, documents: list[dict], scope: dict[str, str], max_rows: int | None = None
) -> set[str]:
    """The contents ``function`` finds for metadata ``documents`` in a transaction of
    ``scope``, at most ``max_rows`` of them."""
    with app_db.transaction():
        for name, value in scope.items():
            app_db.execute("SELECT set_config(%s, %s, true)", [name, value])
        found = app_db.execute(
            f"SELECT id FROM {function}(%s::jsonb[], %s)",
            [[Jsonb(d) for d in documents], max_rows],
        )
        ids = [row[0] for row in found]
        app_db.execute("SELECT set_config('engram.all_users', 'on', true)")
        rows = app_db.execute("SELECT content FROM memories WHERE id = ANY(%s)", [ids])
        return {row[0] for row in rows}


def test_the_metadata_match_functions_find_only_the_scoped_users_items(client, new_user, app_db):
    """memories_containing / chunks_containing run as the owner (so the metadata index
    serves the match) and apply the policies' user condition themselves."""
    alice, alice_headers = new_user()
    bob, bob_headers = new_user()
    for user, headers, text in ((alice, alice_headers, "alice's"), (bob, bob_headers, "bob's")):
        for color in ("red", "blue"):
            body = {"memories": [{"content": f"{text} {color} note", "metadata": {"c": color}}]}
            answer = client.post(f"/v1/users/{user}/memories", json=body, headers=headers)
            assert answer.status_code in (200, 202), answer.text
    red, both = [{"c": "red"}], [{"c": "red"}, {"c": "blue"}]
    function = "memories_containing"
    assert _containing(app_db, function, red, {"engram.user_id": alice}) == {"alice's red note"}
    assert _containing(app_db, function, both, {"engram.user_id": bob}) == {
        "bob's red note",
        "bob's blue note",
    }
    # they stop at the count asked for
    one = _containing(app_db, function, both, {"engram.user_id": bob}, max_rows=1)
    assert len(one) == 1 and one < {"bob's red note", "bob's blue note"}
    # they read one document at a time: an item holding two of them comes once for each
    carol, carol_headers = new_user()
    dark_red = {"content": "carol's dark red note", "metadata": {"c": "red", "shade": "dark"}}
    answer = client.post(
        f"/v1/users/{carol}/memories", json={"memories": [dark_red]}, headers=carol_headers
    )
    assert answer.status_code in (200, 202), answer.text
    with app_db.transaction():
        app_db.execute("SELECT set_config('engram.user_id', %s, true)", [carol])
        asked = [Jsonb({"c": "red"}), Jsonb({"shade": "dark"}), Jsonb({"c": "blue"})]
        rows = app_db.execute(f"SELECT id FROM {function}(%s::jsonb[], NULL)", [asked])
        found = [row[0] for row in rows]
    assert len(found) == 2 and len(set(found)) == 1
    # a transaction that sees all users, or none, finds nothing through them
    assert _containing(app_db, function, both, {"engram.all_users": "on"}) == set()
    assert _containing(app_db, function, both, {}) == set()
    assert _containing(app_db, "chunks_containing", both, {"engram.user_id": alice}) == set()
    document = {"content": "A red document of alice's.", "metadata": {"c": "red"}}
    answer = client.post(
        f"/v1/users/{alice}/documents", json={"documents": [document]}, headers=alice_headers
    )
    assert answer.status_code == 202, answer.text
    with app_db.transaction():
        app_db.execute("SELECT set_config('engram.user_id', %s, true)", [alice])
        chunks = app_db.execute(
            "SELECT id FROM chunks_containing(%s::jsonb[], NULL)", [[Jsonb(red[0])]]
        )
        found = {row[0] for row in chunks}
        owned = app_db.execute("SELECT id FROM chunks WHERE user_id = %s", [alice]).fetchall()
    assert found == {row[0] for row in owned} and found


def test_the_match_functions_are_the_service_roles_only(db):
    rows = db.execute(
        """
        SELECT p.proname, p.prosecdef, p.proconfig,
               has_function_privilege('engram_app', p.oid, 'EXECUTE'),
               has_function_privilege('public', p.oid, 'EXECUTE')
        FROM pg_proc p
        WHERE p.proname IN ('memories_matching', 'chunks_matching', 'memories_containing',
                            'chunks_containing', 'merge_pending_entries')
        ORDER BY 1
        """
    ).fetchall()
    search_path = ["search_path=pg_catalog, pg_temp"]
    index_only = [*search_path, "enable_seqscan=off"]  # its keyed metadata index
    assert rows == [
        ("chunks_containing", True, index_only, True, False),
        ("chunks_matching", True, search_path, True, False),
        ("memories_containing", True, index_only, True, False),
        ("memories_matching", True, search_path, True, False),
        ("merge_pending_entries", True, search_path, True, False),
    ]
