"""How a request body is checked for integers beyond 64 bits before orjson reads it
(graph.http.has_long_digit_run)."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph.http import has_long_digit_run


@given(
    st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([b"0", b"9", b"12345678", b"-", b"."])),
        max_size=60,
    ).map(b"".join)
)
def test_a_long_run_of_digits_is_found_as_the_regex_finds_it(raw: bytes) -> None:
    """graph.http.has_long_digit_run, against the regex it replaced."""
    assert has_long_digit_run(raw) is (re.search(rb"[0-9]{19}", raw) is not None)


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b'{"n": 1234567890123456789}', True),
        (b'{"n": 123456789012345678}', False),
        (b'{"n": "x1234567890123456789y"}', True),
        (b"1234567890 1234567890", False),
        (b"", False),
    ],
)
def test_a_long_run_of_digits_at_its_edges(raw: bytes, found: bool) -> None:
    assert has_long_digit_run(raw) is found
