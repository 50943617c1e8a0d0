"""Hygiene: secrets stay out of logs and error bodies, CORS is closed unless configured."""

from __future__ import annotations

import logging

import msgspec
from litestar.testing import TestClient
from support.api import ADMIN, parts_of
from support.processes import ADMIN_KEY

from models.embedding.spaces import MINILM_384
from service.http.app import create_app


def test_keys_never_reach_logs_or_error_bodies(client, new_user, caplog):
    caplog.set_level(logging.DEBUG)
    user, headers = new_user()
    token = headers["Authorization"].removeprefix("Bearer ")
    forged = token[:-4] + "AAAA"
    answers = [
        client.get(f"/v1/users/{user}/memories", headers=headers),
        client.get(f"/v1/users/{user}/memories", headers={"Authorization": f"Bearer {forged}"}),
        client.get("/v1/users/other/memories", headers=headers),
        client.post("/v1/keys", json={"user_id": "x"}, headers=headers),
        client.get("/v1/keys", headers=ADMIN),
    ]
    secret = parts_of(token)[1]
    for answer in answers:
        assert secret not in answer.text and forged not in answer.text
        assert ADMIN_KEY not in answer.text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert secret not in logged and forged not in logged and ADMIN_KEY not in logged


def test_cors_is_closed_unless_configured(client, settings, embedder):
    origin = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    closed = client.options("/v1/spaces", headers=origin)
    assert "access-control-allow-origin" not in closed.headers
    opened = msgspec.structs.replace(
        settings,
        server=msgspec.structs.replace(settings.server, cors_origins=("https://app.example",)),
    )
    app = create_app(opened, embedders={MINILM_384.name: embedder})
    with TestClient(app) as allowed:
        ok = allowed.get("/healthz", headers={"Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = allowed.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # the search route's hot path answers inside the CORS layer too
        found = allowed.post(
            "/v1/users/cors-user/search",
            json={"vector": [0.1] * MINILM_384.dims},
            headers={**ADMIN, "Origin": "https://app.example"},
        )
        assert found.status_code == 200, found.text
        assert found.headers["access-control-allow-origin"] == "https://app.example"


def test_a_query_one_user_searched_is_embedded_anew_for_another(
    client, new_user, embedder, monkeypatch
):
    """Each user's query vectors are cached for that user alone: a search must not answer
    faster because another user searched the same words."""
    embedded: list[str] = []
    embed = embedder.embed

    async def counted(texts):
        embedded.extend(texts)
        return await embed(texts)

    monkeypatch.setattr(embedder, "embed", counted)
    (ann, ann_headers), (bob, bob_headers) = new_user(), new_user()
    query = {"query": "where did the summer go", "k": 1}
    for user, headers in ((ann, ann_headers), (ann, ann_headers), (bob, bob_headers)):
        answer = client.post(f"/v1/users/{user}/search", json=query, headers=headers)
        assert answer.status_code == 200, answer.text
    assert embedded == ["where did the summer go"] * 2  # ann once (then cached), bob anew


def test_metrics_need_the_metrics_token_or_an_admin_key(client, settings, embedder, new_user):
    """/metrics counts every user's items and requests: not for anyone who reaches the port."""
    _, user_headers = new_user()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert client.get("/metrics", headers=user_headers).status_code == 403
    assert client.get("/metrics", headers=ADMIN).status_code == 200

    def app_with(**server: object) -> TestClient:
        changed = msgspec.structs.replace(settings.server, **server)
        opened = msgspec.structs.replace(settings, server=changed)
        return TestClient(create_app(opened, embedders={MINILM_384.name: embedder}))

    with app_with(metrics_token="scrape-me") as tokened:
        assert tokened.get("/metrics").status_code == 401
        scraped = tokened.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200 and "engram_items" in scraped.text
    with app_with(metrics_public=True) as public:
        assert public.get("/metrics").status_code == 200
