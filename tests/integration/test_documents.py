"""Documents: chunked ingestion, status and batches, dedupe, atomic replacement, deletion."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from support.api import ADMIN, search
from support.processes import wait_until

from models.db.pool import create_pool
from models.db.scope import run_scoped
from models.embedding.spaces import MINILM_384
from models.ingest.chunking import ChunkSpec, split_text
from models.ingest.tokens import hf_token_counter
from models.store import documents
from models.store.documents import NewDocument
from models.store.memories import content_hash

pytestmark = pytest.mark.usefixtures("worker")

GUIDE = """# Espresso guide

## Grinding
Grind the beans fine, about like table salt. A burr grinder keeps the size even.

## Brewing
Use 18 grams of coffee for 36 grams of espresso, in 25 to 30 seconds.
""" + "\n\n".join(
    f"Paragraph {i}: the milk steamer needs descaling every month, or the steam wand clogs."
    for i in range(40)
)
NOTE = "The garden shed key hangs on the hook behind the kitchen door."


def post(client, user, headers, docs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    answer = client.post(
        f"/v1/users/{user}/documents", json={"documents": docs, **extra}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_batch(client, user, headers, batch_id: str) -> dict[str, Any]:
    url = f"/v1/users/{user}/batches/{batch_id}"
    wait_until(lambda: client.get(url, headers=headers).json()["status"] != "in_progress")
    batch: dict[str, Any] = client.get(url, headers=headers).json()
    return batch


def test_documents_are_chunked_within_the_models_limit_and_searchable(client, new_user, embedder):
    user, headers = new_user()
    accepted = post(
        client,
        user,
        headers,
        [
            {"title": "Espresso", "content": GUIDE, "source": "guide.md", "metadata": {"k": 1}},
            {"content": NOTE},
        ],
        collection="house",
    )
    guide, note = accepted["documents"]
    assert guide["status"] == "pending" and guide["collection"] == "house"
    assert guide["space"] == MINILM_384.name and guide["chunk_count"] > 3
    batch = wait_batch(client, user, headers, accepted["batch_id"])
    assert batch["status"] == "completed"
    assert batch["counts"] == {"pending": 0, "ready": 2, "failed": 0, "total": 2}

    chunks = client.get(f"/v1/users/{user}/documents/{guide['id']}/chunks", headers=headers)
    listed = chunks.json()["chunks"]
    assert [c["chunk_index"] for c in listed] == list(range(guide["chunk_count"]))
    count = hf_token_counter(embedder.tokenizer)
    assert all(count(c["content"]) <= 256 and c["status"] == "ready" for c in listed)
    assert listed[0]["content"].startswith("# Espresso guide")  # headings start chunks

    found = search(client, user, headers, query="how fine should I grind?", types=["chunk"])
    assert found[0]["type"] == "chunk" and found[0]["document_id"] == guide["id"]
    assert "Grind the beans fine" in found[0]["content"]
    assert found[0]["metadata"] == {"k": 1}
    filtered = search(client, user, headers, query="where is the key?", filter={"k": 1})
    assert {r["document_id"] for r in filtered} == {guide["id"]}
    mine = search(client, user, headers, query="where is the shed key?", k=1)
    assert mine[0]["document_id"] == note["id"]
    listed_docs = client.get(
        f"/v1/users/{user}/documents", params={"collection": "house"}, headers=headers
    ).json()["documents"]
    assert {d["id"] for d in listed_docs} == {guide["id"], note["id"]}


def test_the_same_content_again_embeds_nothing(client, new_user, db):
    user, headers = new_user()
    first = post(client, user, headers, [{"content": NOTE}])
    wait_batch(client, user, headers, first["batch_id"])
    jobs_before = db.execute("SELECT count(*) FROM embed_state WHERE user_id = %s", [user])
    before = jobs_before.fetchone()
    again = post(client, user, headers, [{"content": NOTE, "title": "renamed"}])
    assert again["documents"][0]["id"] == first["documents"][0]["id"]
    assert again["documents"][0]["status"] == "ready"
    after = db.execute("SELECT count(*) FROM embed_state WHERE user_id = %s", [user])
    assert after.fetchone() == before
    elsewhere = post(client, user, headers, [{"content": NOTE}], collection="other")
    assert elsewhere["documents"][0]["id"] != first["documents"][0]["id"]


def test_new_content_replaces_the_chunks_atomically(client, new_user, db, servers, embedder):
    user, headers = new_user()
    v1 = "Version one: the wifi password is heron-42."
    v2 = "Version two: the wifi password is osprey-77."
    doc = post(client, user, headers, [{"content": v1}])["documents"][0]
    wait_batch(client, user, headers, doc["batch_id"])
    old_chunks = {r[0] for r in db.execute("SELECT id FROM chunks WHERE user_id = %s", [user])}

    # Write v2 straight through the repository (no wake-up is sent), and hold its jobs as
    # if a worker had them: the replacement is in flight for as long as the test wants.
    rewrite(servers, user, doc["id"], v2, embedder)
    db.execute(
        "UPDATE embed_state SET claimed_until = now() + interval '1 hour' "
        "WHERE user_id = %s AND status = 'pending'",
        [user],
    )
    url = f"/v1/users/{user}/documents/{doc['id']}"
    assert client.get(url, headers=headers).json()["status"] == "pending"
    found = search(client, user, headers, query="what is the wifi password?")
    assert [r["content"] for r in found] == [v1]  # the old version, whole, until v2 is ready

    db.execute(
        "UPDATE embed_state SET claimed_until = NULL, queued_at = now() - interval '1 hour' "
        "WHERE user_id = %s AND status = 'pending'",
        [user],
    )
    wait_until(lambda: client.get(url, headers=headers).json()["status"] == "ready")
    wait_until(
        lambda: (
            [r["content"] for r in search(client, user, headers, query="wifi password")] == [v2]
        ),
        what="the new version to go live",
    )
    left = db.execute("SELECT id FROM chunks WHERE user_id = %s", [user]).fetchall()
    assert not old_chunks & {r[0] for r in left}
    vectors = db.execute(
        "SELECT count(*) FROM vec_minilm_384 WHERE user_id = %s AND item_id = ANY(%s)",
        [user, list(old_chunks)],
    ).fetchone()
    assert vectors == (0,)


def rewrite(servers, user: str, doc_id: str, content: str, embedder) -> None:
    spec = ChunkSpec(max_tokens=256, overlap_tokens=32)
    chunks = split_text(content, spec, hf_token_counter(embedder.tokenizer))
    item = NewDocument(
        id=uuid.UUID(doc_id),
        title=None,
        source=None,
        metadata={},
        content_hash=content_hash(content),
        chunks=chunks,
    )

    async def main() -> None:
        pool = create_pool(servers.app_url, min_size=1, max_size=1)
        await pool.open()
        try:
            await run_scoped(
                pool, user, documents.write_documents, user, MINILM_384, "default", [item]
            )
        finally:
            await pool.close()

    asyncio.run(main())


def test_deleting_a_document_deletes_its_chunks_jobs_and_vectors(client, new_user, db):
    user, headers = new_user()
    doc = post(client, user, headers, [{"content": GUIDE, "source": "guide.md"}])["documents"][0]
    wait_batch(client, user, headers, doc["batch_id"])
    url = f"/v1/users/{user}/documents/{doc['id']}"
    assert client.delete(url, headers=headers).status_code == 204
    assert client.get(url, headers=headers).status_code == 404
    assert search(client, user, headers, query="grind the beans") == []
    for table in ("documents", "chunks", "embed_state", "vec_minilm_384"):
        count = db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", [user])
        assert count.fetchone() == (0,), table
    assert client.delete(url, headers=headers).status_code == 404


def test_erasing_a_user_takes_their_documents(client, new_user, db):
    user, headers = new_user()
    doc = post(client, user, headers, [{"content": NOTE}])
    wait_batch(client, user, headers, doc["batch_id"])
    erased = client.delete(f"/v1/users/{user}", headers=ADMIN).json()
    assert erased["documents"] == 1 and erased["vectors"] == 1
    for table in ("documents", "chunks", "document_batches", "embed_state", "vec_minilm_384"):
        count = db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", [user])
        assert count.fetchone() == (0,), table


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"documents": []}, 422),
        ({"documents": [{"content": "   "}]}, 422),
        ({"documents": [{"content": "a\x00b"}]}, 422),
        ({"documents": [{"content": "x"}], "collection": "no spaces allowed"}, 422),
        ({"documents": [{"content": "x", "format": "pdf"}]}, 422),
        ({"documents": [{"content": "x"}], "space": "nope"}, 422),
        ({"documents": [{"content": "x", "surprise": 1}]}, 422),
    ],
)
def test_bad_documents_are_refused_and_change_nothing(client, new_user, db, body, status):
    user, headers = new_user()
    answer = client.post(f"/v1/users/{user}/documents", json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert db.execute("SELECT count(*) FROM documents WHERE user_id = %s", [user]).fetchone() == (
        0,
    )


def test_a_document_over_the_size_limit_is_a_422(client, new_user):
    user, headers = new_user()
    body = {"documents": [{"content": "a" * (5 * 1024 * 1024 + 1)}]}
    answer = client.post(f"/v1/users/{user}/documents", json=body, headers=headers)
    assert answer.status_code == 422 and "larger than" in answer.text


def test_files_are_uploaded_as_documents(client, new_user):
    user, headers = new_user()
    page = (
        "<html><head><title>x</title><style>p {color: red}</style></head><body>"
        "<h1>Boiler</h1><p>Bleed the radiators every <b>autumn</b>.</p>"
        "<script>alert('no')</script></body></html>"
    )
    files = [
        ("files", ("notes.txt", b"The spare key is in the blue pot.", "text/plain")),
        ("files", ("guide.md", b"# Bikes\n\nPump the tyres weekly.", "text/markdown")),
        ("files", ("boiler.html", page.encode(), "text/html")),
    ]
    answer = client.post(
        f"/v1/users/{user}/documents/files",
        files=files,
        data={"collection": "uploads"},
        headers=headers,
    )
    assert answer.status_code == 202, answer.text
    docs = answer.json()["documents"]
    assert [d["source"] for d in docs] == ["notes.txt", "guide.md", "boiler.html"]
    assert {d["collection"] for d in docs} == {"uploads"}
    wait_batch(client, user, headers, answer.json()["batch_id"])
    chunks = client.get(f"/v1/users/{user}/documents/{docs[2]['id']}/chunks", headers=headers)
    text = " ".join(c["content"] for c in chunks.json()["chunks"])
    assert "# Boiler" in text and "Bleed the radiators every autumn." in text
    assert "alert" not in text and "color" not in text
    found = search(client, user, headers, query="when to bleed the radiators?", k=1)
    assert found[0]["document_id"] == docs[2]["id"]


@pytest.mark.parametrize(
    ("name", "raw", "content_type"),
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        ("latin1.txt", "café".encode("latin-1"), "text/plain"),
        ("empty.txt", b"   ", "text/plain"),
    ],
)
def test_unsupported_or_empty_files_are_a_422(client, new_user, db, name, raw, content_type):
    user, headers = new_user()
    answer = client.post(
        f"/v1/users/{user}/documents/files",
        files=[("files", (name, raw, content_type))],
        headers=headers,
    )
    assert answer.status_code == 422, answer.text
    assert db.execute("SELECT count(*) FROM documents WHERE user_id = %s", [user]).fetchone() == (
        0,
    )


def test_json_to_the_upload_path_and_files_to_the_json_path_are_a_415(client, new_user):
    user, headers = new_user()
    as_json = client.post(
        f"/v1/users/{user}/documents/files", json={"documents": []}, headers=headers
    )
    as_files = client.post(
        f"/v1/users/{user}/documents",
        files=[("files", ("a.txt", b"hello", "text/plain"))],
        headers=headers,
    )
    assert as_json.status_code == as_files.status_code == 415
