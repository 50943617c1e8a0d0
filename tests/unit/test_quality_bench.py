"""bench/quality.py's pure parts: LoCoMo's evidence ids and dates as it reads them, and the
measures it reports. No server, no model."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from quality import (
    EvidenceCounts,
    Turn,
    by_conversation,
    conversation_table,
    held_out,
    held_out_table,
    in_context,
    merged,
    message_body,
    new_tally,
    normalise_evidence,
    parse_locomo_time,
    question_evidence,
    read_conversation,
    recall_at,
    reciprocal_rank,
    remembered,
    summarise,
)

TURNS = {"D1:1", "D1:2", "D8:6", "D9:17", "D11:26", "D30:5"}


@pytest.mark.parametrize(
    ("raw", "ids", "malformed"),
    [
        ("D1:2", ["D1:2"], 0),
        ("D:11:26", ["D11:26"], 0),
        ("D30:05", ["D30:5"], 0),
        ("D8:6; D9:17", ["D8:6", "D9:17"], 0),
        ("D8:6,D9:17", ["D8:6", "D9:17"], 0),
        ("D", [], 1),
        ("", [], 0),
    ],
)
def test_evidence_ids_are_normalised(raw: str, ids: list[str], malformed: int) -> None:
    assert normalise_evidence(raw) == (ids, malformed)


def test_evidence_keeps_known_turns_and_counts_the_rest() -> None:
    counts = EvidenceCounts()
    raw = ["D1:1", "D:11:26", "D8:6; D9:17", "D", "D10:19", "D1:1"]
    assert question_evidence(raw, TURNS, counts) == {"D1:1", "D11:26", "D8:6", "D9:17"}
    assert counts == EvidenceCounts(ids_read=6, ids_rewritten=3, ids_dropped_malformed=1,
                                    ids_dropped_missing=1)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:56 pm on 8 May, 2023", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("12:09 am on 13 September, 2023", datetime(2023, 9, 13, 0, 9, tzinfo=UTC)),
        ("12:30 pm on 1 January, 2022", datetime(2022, 1, 1, 12, 30, tzinfo=UTC)),
        ("10:04 AM on 19 December 2023", datetime(2023, 12, 19, 10, 4, tzinfo=UTC)),
    ],
)
def test_locomo_times_are_read(text: str, expected: datetime) -> None:
    assert parse_locomo_time(text) == expected


@pytest.mark.parametrize("text", ["8 May, 2023", "1:56 pm on 8 Mai, 2023", "13:00"])
def test_other_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a LoCoMo date"):
        parse_locomo_time(text)


def test_a_conversation_is_read_in_order_with_its_questions() -> None:
    sample = {
        "sample_id": "conv-1",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_2_date_time": "9:00 am on 2 May, 2023",
            "session_2": [{"speaker": "Ann", "dia_id": "D2:1", "text": "Later."}],
            "session_1_date_time": "1:56 pm on 1 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "Hi!"},
                {"speaker": "Bo", "dia_id": "D1:2", "text": "Look.", "blip_caption": "a photo"},
                {"speaker": "Ann", "dia_id": "D1:3", "text": "Hi!"},
            ],
        },
        "qa": [
            {"question": "q1", "answer": "a", "evidence": ["D1:02"], "category": 4},
            {"question": "q2", "answer": "a", "evidence": ["D7:1"], "category": 1},
        ],
    }
    counts = EvidenceCounts()
    conversation = read_conversation(sample, counts)
    assert list(conversation.sessions) == [1, 2]
    first = conversation.sessions[1]
    assert [t.content for t in first] == ["Hi!", "Look. [shares a photo]", "Hi!"]
    assert first[2].occurred_at == datetime(2023, 5, 1, 13, 56, 2, tzinfo=UTC)
    assert [(q.text, q.evidence) for q in conversation.questions] == [("q1", {"D1:2"})]
    assert counts.questions_without_evidence == 1
    # a memory that Engram kept for two turns of the same text stands for both
    memory_of = {"D1:1": "m1", "D1:2": "m2", "D1:3": "m1", "D2:1": "m3"}
    assert remembered(conversation, memory_of) == {
        "m1": {"D1:1", "D1:3"},
        "m2": {"D1:2"},
        "m3": {"D2:1"},
    }


def test_recall_counts_the_turns_of_the_first_k_results() -> None:
    ranked = [frozenset({"a"}), frozenset({"b", "c"}), frozenset({"d"})]
    assert recall_at(ranked, frozenset({"c", "d", "z"}), 2) == pytest.approx(1 / 3)
    assert recall_at(ranked, frozenset({"c", "d", "z"}), 10) == pytest.approx(2 / 3)
    assert recall_at([], frozenset({"a"}), 5) == 0


def test_reciprocal_rank_is_that_of_the_first_result_holding_evidence() -> None:
    ranked = [frozenset({"a"}), frozenset({"b", "c"}), frozenset({"d"})]
    assert reciprocal_rank(ranked, frozenset({"c", "d"})) == 0.5
    assert reciprocal_rank(ranked, frozenset({"a"})) == 1
    assert reciprocal_rank(ranked, frozenset({"z"})) == 0


def test_a_context_covers_a_question_when_every_evidence_text_is_in_it() -> None:
    when = datetime(2023, 5, 1, tzinfo=UTC)
    turns = {
        "D1:1": Turn("D1:1", 1, "Ann", "I paint  sunsets.", when),
        "D1:2": Turn("D1:2", 1, "Bo", "I run.", when),
    }
    text = "Relevant memories:\n- I paint sunsets.\n- Something else."
    assert in_context(text, {"D1:1"}, turns)
    assert not in_context(text, {"D1:1", "D1:2"}, turns)


def test_a_turn_is_sent_with_its_speaker_time_and_an_id_of_its_own() -> None:
    conversation = read_conversation(
        {
            "sample_id": "conv-1",
            "conversation": {
                "session_1_date_time": "1:56 pm on 8 May, 2023",
                "session_1": [
                    {"speaker": "Ann", "dia_id": "D1:1", "text": "Hi!"},
                    {"speaker": "Bo", "dia_id": "D1:2", "text": "Hi!"},
                ],
            },
            "qa": [],
        },
        EvidenceCounts(),
    )
    first, second = (message_body(conversation, t) for t in conversation.sessions[1])
    assert second == {
        "id": second["id"],
        "role": "user",
        "name": "Bo",
        "content": "Hi!",
        "occurred_at": "2023-05-08T13:56:01+00:00",
        "metadata": {"dia_id": "D1:2"},
    }
    assert first["id"] != second["id"]
    assert message_body(conversation, conversation.sessions[1][1])["id"] == second["id"]


def test_conversations_are_scored_alone_and_together() -> None:
    first, second = new_tally(), new_tally()
    evidence = frozenset({"D1:1"})
    first["engram-hybrid"][4].add_ranking([frozenset({"D1:1"})], evidence)  # found
    first["engram-context"][4].covered.append(True)
    second["engram-hybrid"][4].add_ranking([frozenset({"D2:2"})], evidence)  # missed
    second["engram-hybrid"][5].add_ranking([frozenset({"D1:1"})], evidence)  # not scored
    second["engram-context"][4].covered.append(False)

    overall = summarise(merged({"a": first, "b": second}))
    assert overall["engram-hybrid"]["overall"]["recall@10"] == 0.5
    assert overall["engram-hybrid"]["by_category"]["5"]["questions"] == 1
    assert overall["engram-context"]["overall"]["context_coverage"] == 0.5
    table = conversation_table(by_conversation({"a": first, "b": second})).splitlines()
    assert table[2] == "| a | 1 | - | 1.000 | - | 1.000 |"
    assert table[3] == "| b | 1 | - | 0.000 | - | 0.000 |"


def test_each_conversation_held_out_takes_the_setting_best_on_the_others() -> None:
    # [sum of figures, questions] by conversation, by setting
    figures = {
        "a": {"hybrid, fusion by scores": [6, 10], "hybrid, reach 1": [9, 10],
              "context, floor 0.25": [5, 10], "context, floor 0.0": [5, 10]},
        "b": {"hybrid, fusion by scores": [8, 10], "hybrid, reach 1": [5, 10],
              "context, floor 0.25": [7, 10], "context, floor 0.0": [7, 10]},
        "c": {"hybrid, fusion by scores": [3, 5], "hybrid, reach 1": [2, 5],
              "context, floor 0.25": [1, 5], "context, floor 0.0": [1, 5]},
    }  # fmt: skip
    hybrid = held_out(figures, "hybrid")
    # without a: b and c give scores 11/15 against reach's 7/15
    assert hybrid[0] == ("a", "hybrid, fusion by scores", 0.6, 0.6)
    # without b: a and c give reach 11/15 against scores' 9/15
    assert hybrid[1] == ("b", "hybrid, reach 1", 0.5, 0.8)
    # without c: 14/20 each, and a tie keeps the default
    assert hybrid[2] == ("c", "hybrid, fusion by scores", 0.6, 0.6)
    context = held_out(figures, "context")
    assert [row[1] for row in context] == ["context, floor 0.25"] * 3
    assert held_out_table({"a": figures["a"]}) == []
    assert "| b | recall@10 | hybrid, reach 1 | 0.500 | 0.800 |" in held_out_table(figures)[1]
