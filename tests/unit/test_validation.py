"""Rules for input that a type alone cannot express: event times and speakers' names. No
server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from models.errors import InvalidInput
from models.validation import check_event_time, check_speaker_name, check_time_filter, naming


def test_an_event_time_keeps_its_instant_in_utc():
    """RFC 3339 offsets reach 23:59 hours, PostgreSQL's 15:59: times go on in UTC."""
    at = datetime(2023, 5, 8, 13, 56, tzinfo=timezone(timedelta(hours=2)))
    assert check_event_time(at) == datetime(2023, 5, 8, 11, 56, tzinfo=UTC)
    far = check_event_time(
        datetime(1597, 6, 30, 15, 7, tzinfo=timezone(timedelta(hours=21, minutes=50)))
    )
    assert far is not None and far.utcoffset() == timedelta(0)
    assert far == datetime(1597, 6, 29, 17, 17, tzinfo=UTC)
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


def test_a_time_filter_may_be_naive_as_before():
    naive = datetime(2023, 5, 8, 13, 56)
    assert check_time_filter(naive, field="created_after") is naive
    far = datetime(2023, 5, 8, tzinfo=timezone(timedelta(hours=-23)))
    assert check_time_filter(far, field="created_after") == far.astimezone(UTC)
    with pytest.raises(InvalidInput, match=r"^created_after must be between"):
        check_time_filter(
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), field="created_after"
        )
