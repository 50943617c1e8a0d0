"""Rules for input that a type alone cannot express: event times and speakers' names. No
server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from models.errors import InvalidInput
from models.validation import check_event_time, check_speaker_name, naming


def test_an_event_time_keeps_its_instant():
    at = datetime(2023, 5, 8, 13, 56, tzinfo=timezone(timedelta(hours=2)))
    assert check_event_time(at) == datetime(2023, 5, 8, 11, 56, tzinfo=UTC)
    assert check_event_time(None) is None
    assert check_event_time(datetime(1, 1, 2, tzinfo=UTC)) is not None
    assert check_event_time(datetime(9999, 12, 31, tzinfo=UTC)) is not None


@pytest.mark.parametrize(
    ("at", "words"),
    [
        (datetime(2023, 5, 8, 13, 56), "must carry a UTC offset"),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "between the years"),
        (datetime(1, 1, 1, 23, tzinfo=UTC), "between the years"),
        (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), "between the years"),
    ],
    ids=["naive", "year-0-in-utc", "first-day", "year-10000-in-utc"],
)
def test_an_event_time_without_offset_or_out_of_range_is_refused(at, words):
    with pytest.raises(InvalidInput, match=words), naming("messages[2]"):
        check_event_time(at)
    with pytest.raises(InvalidInput, match=r"^messages\[2\]: occurred_at"), naming("messages[2]"):
        check_event_time(at)


@pytest.mark.parametrize("name", ["Caroline", "Zoë 😀", "x" * 128, "Dr. Ann O'Neil-Smith"])
def test_a_speakers_name_may_be_any_printable_text(name):
    assert check_speaker_name(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "1 to 128"),
        ("  ", "1 to 128"),
        ("x" * 129, "1 to 128"),
        ("Ann\nSmith", "control characters"),
        ("Ann\x00", "control characters"),
        ("Ann\x7f", "control characters"),
        ("Ann\x85", "control characters"),
    ],
)
def test_a_bad_speakers_name_is_refused(name, words):
    with pytest.raises(InvalidInput, match=words):
        check_speaker_name(name)
