"""json and jsonb values are read (models.db.load_json) exactly as ``json.loads`` reads them."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from models.db.pool import load_json

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(VALUES)
def test_reads_what_json_loads_reads(value):
    text = json.dumps(value).encode()
    assert load_json(text) == json.loads(text)


def test_numbers_beyond_a_float_and_beyond_64_bits():
    for text in (b"1e400", b"-1e400", b"123456789012345678901234567890", b"[1.5e308, -0.0]"):
        assert load_json(text) == json.loads(text)
    assert load_json(memoryview(b'{"a": [1, "b"]}')) == {"a": [1, "b"]}
