"""The JSON text written to the database keeps each number's type and value (I6)."""

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from db.json_text import dump_json

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
values = st.one_of(finite_floats, st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text())


def same_json(left: Any, right: Any) -> bool:
    return type(left) is type(right) and left == right


@given(st.dictionaries(st.text(min_size=1), values))
def test_every_value_reads_back_with_its_type_and_value(document: dict[str, Any]) -> None:
    read_back = orjson.loads(dump_json(document))
    assert read_back.keys() == document.keys()
    for key, value in document.items():
        assert same_json(read_back[key], 0.0 if value == 0.0 and type(value) is float else value)


@pytest.mark.parametrize(
    "value", [1e16, -1e16, 1.5e16, 4.611686018427388e18, 1.7976931348623157e308]
)
def test_large_floats_are_written_positionally_so_numeric_keeps_them_floats(value: float) -> None:
    text = dump_json({"n": value})
    assert "e" not in text.removeprefix('{"n"')
    assert text.endswith(".0}")
    assert orjson.loads(text)["n"] == value


def test_negative_zero_is_written_as_zero() -> None:
    assert dump_json({"n": -0.0, "m": [-0.0]}) == '{"n":0.0,"m":[0.0]}'


def test_strings_that_look_like_exponents_are_left_alone() -> None:
    document = {"model": "1e+16", "sign": "-0.0", "n": 1e-7}
    assert dump_json(document) == orjson.dumps(document).decode()


def test_sorted_text_is_the_same_for_documents_stored_alike() -> None:
    assert dump_json({"b": -0.0, "a": 1e16}, sort_keys=True) == dump_json(
        {"a": 1e16, "b": 0.0}, sort_keys=True
    )
    assert dump_json({"a": 1}, sort_keys=True) != dump_json({"a": 1.0}, sort_keys=True)
