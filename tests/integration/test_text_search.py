"""The text side of hybrid search: BM25 over the user's own items, in a language's
text-search configuration, fused with the vector ranking: by scores (the default) or by
weighted reciprocal rank fusion.

With ``fusion`` {"vector": 0} the fused order is the text ranking alone (an item found only
by vector scores 0), which lets these tests look at BM25 through the API.
"""

from __future__ import annotations

import math
import uuid

import pytest
from support.api import add_memories, search

from models.search import bm25

pytestmark = pytest.mark.usefixtures("worker")

TEXT_ONLY = {"vector": 0, "text": 1}


def text_ranking(client, user, headers, query, **body):
    """The contents the text side ranks, best first (items it does not find left out)."""
    found = search(client, user, headers, query=query, mode="hybrid", fusion=TEXT_ONLY, **body)
    return [hit["content"] for hit in found if hit["score"] > 0]


def test_rare_words_outweigh_common_ones(client, new_user):
    """BM25's idf: a word most of the user's items hold says little; a rare one decides."""
    user, headers = new_user()
    common = [f"Alice said the weather was fine on day {n}." for n in range(12)]
    add_memories(client, user, headers, [*common, "A zebra crossed the road by the farm."])
    ranked = text_ranking(client, user, headers, "What did Alice say about the zebra?", k=20)
    assert ranked[0] == "A zebra crossed the road by the farm."
    assert set(ranked[1:]) == set(common)


def test_shorter_items_rank_first_for_the_same_words(client, new_user):
    user, headers = new_user()
    long = "The invoice " + " ".join(f"line{n}" for n in range(60)) + " was paid."
    add_memories(client, user, headers, [long, "The invoice was paid."])
    assert text_ranking(client, user, headers, "invoice paid") == ["The invoice was paid.", long]


def test_scores_are_bm25s(client, new_user):
    """Each item's score is its BM25 over the user's items (in ``simple``, a word is a term),
    relative to the best one's: how often an item holds a term and its length count."""
    user, headers = new_user()
    items = ["apple apple pear", "apple plum plum plum kiwi", "pear kiwi fig", "fig fig date"]
    body = {"memories": [{"content": c} for c in items], "language": "simple", "wait": True}
    assert client.post(f"/v1/users/{user}/memories", json=body, headers=headers).status_code == 200
    body = {"query": "apple fig", "mode": "hybrid", "fusion": TEXT_ONLY, "language": "simple"}
    found = search(client, user, headers, k=10, **body)
    words = [item.split() for item in items]
    average = sum(map(len, words)) / len(words)

    def bm25_of(terms: list[str]) -> float:
        score = 0.0
        for term in ("apple", "fig"):
            df = sum(term in other for other in words)
            idf = math.log(1 + (len(words) - df + 0.5) / (df + 0.5))
            tf = terms.count(term)
            norm = 1 - bm25.BM25_B + bm25.BM25_B * len(terms) / average
            score += idf * tf * (bm25.BM25_K1 + 1) / (tf + bm25.BM25_K1 * norm)
        return score

    expected = {item: bm25_of(terms) for item, terms in zip(items, words, strict=True)}
    best = max(expected.values())
    assert {hit["content"]: hit["score"] for hit in found} == pytest.approx(
        {item: score / best for item, score in expected.items()}
    )


def test_english_stems_words_and_drops_stop_words(client, new_user):
    user, headers = new_user()
    add_memories(client, user, headers, ["Bleed each radiator in the autumn.", "Buy milk."])
    assert text_ranking(client, user, headers, "bleeding radiators") == [
        "Bleed each radiator in the autumn."
    ]
    assert text_ranking(client, user, headers, "what is it that they were") == []


def test_a_search_may_name_its_language(client, new_user):
    """Items are indexed in the configured language (english here); a search in another
    language parses its words in that one and looks among items indexed in it."""
    user, headers = new_user()
    add_memories(client, user, headers, ["Bleed each radiator in the autumn."])
    assert text_ranking(client, user, headers, "radiators", language="english") != []
    assert text_ranking(client, user, headers, "radiators", language="simple") == []
    for language, why in (("klingon", "not a text-search configuration"), ("DROP", "language")):
        body = {"query": "radiators", "mode": "hybrid", "language": language}
        answer = client.post(f"/v1/users/{user}/search", json=body, headers=headers)
        assert answer.status_code == 422 and why in answer.text, answer.text


def test_writes_may_name_their_language(client, new_user, db):
    """Memories, messages and documents written with a ``language`` are indexed in it (the
    configured one otherwise): a search in that language finds them by their stems."""
    user, headers = new_user()
    base = f"/v1/users/{user}"
    french = "Les chevaux mangeaient des pommes dans le jardin."
    body = {"memories": [{"content": french}], "language": "french", "wait": True}
    assert client.post(f"{base}/memories", json=body, headers=headers).status_code == 200
    session = client.post(f"{base}/sessions", json={}, headers=headers).json()
    message = {"role": "user", "content": "Nous irons au marché demain matin."}
    body = {"messages": [message], "language": "french", "wait": True}
    answer = client.post(f"{base}/sessions/{session['id']}/messages", json=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    document = {"content": "Der Hund schläft im Garten, die Katzen spielen."}
    body = {"documents": [document], "language": "german", "wait": True}
    answer = client.post(f"{base}/documents", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    add_memories(client, user, headers, ["The horses ate apples in the garden."])

    configs = db.execute(
        "SELECT text_config::text FROM memories WHERE user_id = %s "
        "UNION ALL SELECT text_config::text FROM chunks WHERE user_id = %s",
        [user, user],
    ).fetchall()
    assert sorted(row[0] for row in configs) == ["english", "french", "french", "german"]
    assert text_ranking(client, user, headers, "cheval", language="french") == [french]
    assert text_ranking(client, user, headers, "marchés", language="french") == [message["content"]]
    found = search(client, user, headers, query="Katze", mode="hybrid", fusion=TEXT_ONLY,
                   language="german", types=["chunk"])  # fmt: skip
    assert [hit["type"] for hit in found if hit["score"] > 0] == ["chunk"]
    assert text_ranking(client, user, headers, "horse") == ["The horses ate apples in the garden."]
    body = {"memories": [{"content": "x"}], "language": "klingon"}
    answer = client.post(f"{base}/memories", json=body, headers=headers)
    assert answer.status_code == 422 and "not a text-search configuration" in answer.text


def test_fusion_weights_choose_between_the_rankings(client, new_user):
    user, headers = new_user()
    add_memories(client, user, headers, [
        "Ticket HU-9916: the printer jams.",
        "The office printer keeps jamming on thick paper.",
        "Lunch is at noon.",
    ])  # fmt: skip
    vector = search(client, user, headers, query="HU-9916 printer", k=3)
    vector_only = search(client, user, headers, query="HU-9916 printer", k=3, mode="hybrid",
                         fusion={"vector": 1, "text": 0})  # fmt: skip
    assert [h["id"] for h in vector_only] == [h["id"] for h in vector]
    # by scores: the similarities rescaled, the least similar candidate to 0, the most to 1
    assert vector_only[0]["score"] == pytest.approx(1.0)
    assert vector_only[-1]["score"] == pytest.approx(0.0)
    by_ranks = search(client, user, headers, query="HU-9916 printer", k=3, mode="hybrid",
                      fusion={"method": "ranks", "vector": 1, "text": 0})  # fmt: skip
    assert [h["id"] for h in by_ranks] == [h["id"] for h in vector]
    assert [h["score"] for h in by_ranks] == pytest.approx([1 / 6, 1 / 7, 1 / 8])
    for fusion in ({"vector": 1, "text": 2}, {"method": "ranks", "vector": 1, "text": 2, "k": 1}):
        both = search(client, user, headers, query="HU-9916 printer", k=1, mode="hybrid",
                      fusion=fusion)  # fmt: skip
        assert both[0]["content"] == "Ticket HU-9916: the printer jams."
    body = {"query": "printer", "mode": "hybrid", "fusion": {"vector": 0, "text": 0}}
    answer = client.post(f"/v1/users/{user}/search", json=body, headers=headers)
    assert answer.status_code == 422 and "cannot both be 0" in answer.text
    body["fusion"] = {"method": "votes"}
    answer = client.post(f"/v1/users/{user}/search", json=body, headers=headers)
    assert answer.status_code == 422 and "method" in answer.text


def test_equal_items_rank_equally_every_time(client, new_user):
    """Ties in both rankings go by id, so the same search gives the same order."""
    user, headers = new_user()
    ids = sorted(str(uuid.uuid4()) for _ in range(4))
    body = {"memories": [{"id": i, "content": "Water the ferns on Monday."} for i in ids],
            "wait": True}  # fmt: skip
    assert client.post(f"/v1/users/{user}/memories", json=body, headers=headers).is_success
    add_memories(client, user, headers, ["Feed the cat.", "Water the garden."])
    body = {"query": "water ferns", "k": 4, "mode": "hybrid"}
    orders = {tuple(h["id"] for h in search(client, user, headers, **body)) for _ in range(3)}
    assert orders == {tuple(ids)}


def test_another_users_words_do_not_change_a_users_scores(client, new_user):
    user, headers = new_user()
    other, other_headers = new_user()
    add_memories(client, user, headers, ["A zebra at the zoo.", "A lion at the zoo."])
    before = search(client, user, headers, query="zebra zoo", mode="hybrid", fusion=TEXT_ONLY)
    add_memories(client, other, other_headers, [f"zebra number {n}" for n in range(20)])
    after = search(client, user, headers, query="zebra zoo", mode="hybrid", fusion=TEXT_ONLY)
    assert [(h["id"], h["score"]) for h in after] == [(h["id"], h["score"]) for h in before]


def test_text_statistics_follow_every_write(client, new_user, db):
    """``text_stats`` holds, per user, type and configuration, the number of items and the
    sum of their lengths: as a recount finds them after inserts, edits and deletes."""
    user, headers = new_user()
    stored = add_memories(client, user, headers, ["One two three.", "Four five.", "Six."])
    edit = {"content": "Seven eight nine ten eleven."}
    patched = client.patch(
        f"/v1/users/{user}/memories/{stored[0]['id']}", json=edit, headers=headers
    )
    assert patched.status_code == 200, patched.text
    deleted = client.delete(f"/v1/users/{user}/memories/{stored[1]['id']}", headers=headers)
    assert deleted.status_code == 204
    documents = {"documents": [{"content": "Alpha beta gamma. " * 40}], "wait": True}
    assert client.post(f"/v1/users/{user}/documents", json=documents, headers=headers).is_success

    def kept() -> list[tuple]:
        return db.execute(
            "SELECT kind, config::text, items, terms FROM text_stats "
            "WHERE user_id = %s AND items > 0 ORDER BY 1, 2",
            [user],
        ).fetchall()

    recount = db.execute(
        "SELECT kind, config, count(*), sum(text_length(content_tsv)) FROM ("
        "  SELECT 'memory' AS kind, text_config::text AS config, content_tsv FROM memories"
        "  WHERE user_id = %(u)s UNION ALL"
        "  SELECT 'chunk', text_config::text, content_tsv FROM chunks WHERE user_id = %(u)s) i "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        {"u": user},
    ).fetchall()
    assert kept() == recount
    assert ("memory", "english", 2, 6) in recount  # "seven".."eleven" and "six"
    assert client.delete(f"/v1/users/{user}", headers=headers).status_code == 200
    assert kept() == []


def test_common_words_score_but_do_not_make_candidates(client, new_user, monkeypatch):
    """Past ``COMMON_FLOOR`` items, a word more than ``COMMON_SHARE`` of them hold ranks the
    items another word of the query finds, and finds none itself (Lucene's common terms);
    with every word common, the items holding all of them are ranked."""
    user, headers = new_user()
    harbour = [f"The harbour was quiet on day {n}." for n in range(6)]
    lights = [f"The harbour lights were on at {n} o'clock." for n in range(2)]
    zeppelin = ["A zeppelin flew over the harbour.", "The zeppelin landed in a field."]
    add_memories(client, user, headers, [*harbour, *lights, *zeppelin])
    plain = search(client, user, headers, query="harbour zeppelin", mode="hybrid",
                   fusion=TEXT_ONLY, k=20)  # fmt: skip
    assert {h["content"] for h in plain if h["score"] > 0} == {*harbour, *lights, *zeppelin}
    monkeypatch.setattr(bm25, "COMMON_FLOOR", 5)
    monkeypatch.setattr(bm25, "COMMON_SHARE", 0.3)
    common = search(client, user, headers, query="harbour zeppelin", mode="hybrid",
                    fusion=TEXT_ONLY, k=20)  # fmt: skip
    assert [h["content"] for h in common if h["score"] > 0] == zeppelin
    # up to the sample's size, a common word's df is its count: the scores are BM25's
    scores = {h["content"]: h["score"] for h in plain}
    assert {h["content"]: h["score"] for h in common if h["score"] > 0} == {
        text: scores[text] for text in zeppelin
    }
    assert set(text_ranking(client, user, headers, "harbour lights", k=20)) == set(lights)
    # every word common ("quiet" is in 6 of 10): the items holding both
    assert set(text_ranking(client, user, headers, "quiet harbour", k=20)) == set(harbour)


def test_how_common_a_word_is_comes_from_a_sample_of_the_first_items(client, new_user, monkeypatch):
    """The sample is the user's first items by id, as many as make a word on the line
    between common and not expected in ``SAMPLE_HITS`` of them: a word all of the sample
    holds is common though most of the user's items do not hold it."""
    user, headers = new_user()
    harbour = [f"The harbour was quiet on day {n}." for n in range(4)]
    fields = [f"A field of barley, number {n}." for n in range(4)]
    zeppelin = ["A zeppelin flew over the town.", "The zeppelin landed on the hill."]
    memories = [
        {"id": str(uuid.UUID(int=n + 1)), "content": content}
        for n, content in enumerate([*harbour, *fields, *zeppelin])
    ]
    answer = client.post(
        f"/v1/users/{user}/memories", json={"memories": memories, "wait": True}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    monkeypatch.setattr(bm25, "COMMON_FLOOR", 5)
    monkeypatch.setattr(bm25, "COMMON_SHARE", 0.3)
    # a sample of every item: "harbour" is in 4 of 10, not common, and finds its items
    found = text_ranking(client, user, headers, "harbour zeppelin", k=20)
    assert set(found) == {*harbour, *zeppelin}
    # a sample of the first 4 (2 hits at the line, 5 items of 10): all of them hold it
    monkeypatch.setattr(bm25, "SAMPLE_HITS", 2)
    found = text_ranking(client, user, headers, "harbour zeppelin", k=20)
    assert set(found) == set(zeppelin)
