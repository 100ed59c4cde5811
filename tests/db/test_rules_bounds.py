"""Pure unit tests of the length bounds of client strings and of what errors repeat."""

import pytest

from db.errors import BadUserInput, UserErrorCode, shown
from db.filters import MAX_FILTER_STRING_LENGTH, parse_filter
from db.records import EventDraft
from db.rules.bounds import MAX_SERVER_ID_LENGTH, each_too_long, refuse, refuse_long_id, too_long
from db.rules.ingestion import check_customer_reference, check_customers_exist


def test_shown_keeps_short_text_and_cuts_long_text_to_100_characters() -> None:
    assert shown("") == ""
    assert shown("x" * 100) == "x" * 100
    assert shown("x" * 2_000_000) == "x" * 100 + "…"
    assert shown("abcdef", limit=3) == "abc…"


def test_too_long_names_the_field_the_bound_and_the_length() -> None:
    assert too_long(None, 3, ("name",), UserErrorCode.INVALID_INPUT) == []
    assert too_long("abc", 3, ("name",), UserErrorCode.INVALID_INPUT) == []
    [violation] = too_long("abcd", 3, ("input", "name"), UserErrorCode.INVALID_INPUT, "e1")
    assert (violation.code, violation.field, violation.event_id) == (
        UserErrorCode.INVALID_INPUT,
        ("input", "name"),
        "e1",
    )
    assert violation.message == "name must be at most 3 characters long, not 4."


def test_too_long_counts_characters_not_bytes() -> None:
    assert too_long("é" * 3, 3, ("name",), UserErrorCode.INVALID_INPUT) == []
    assert too_long("😀" * 3, 3, ("name",), UserErrorCode.INVALID_INPUT) == []


def test_each_too_long_points_at_each_entry() -> None:
    violations = each_too_long(
        ["ok", "long", "abc", "longer"], 3, ("ids",), UserErrorCode.INVALID_INPUT
    )
    assert [(v.field, v.message) for v in violations] == [
        (("ids", "1"), "ids must be at most 3 characters long, not 4."),
        (("ids", "3"), "ids must be at most 3 characters long, not 6."),
    ]
    assert each_too_long(None, 3, ("ids",), UserErrorCode.INVALID_INPUT) == []


def test_refuse_raises_the_first_violation_as_bad_user_input() -> None:
    refuse([])
    with pytest.raises(BadUserInput) as raised:
        refuse(each_too_long(["long", "longer"], 3, ("ids",), UserErrorCode.EVENT_ID_INVALID))
    assert (raised.value.code, raised.value.field) == (UserErrorCode.EVENT_ID_INVALID, ("ids", "0"))


def test_an_id_argument_is_at_most_40_characters() -> None:
    refuse_long_id("x" * MAX_SERVER_ID_LENGTH, ("id",))
    with pytest.raises(BadUserInput) as raised:
        refuse_long_id("x" * (MAX_SERVER_ID_LENGTH + 1), ("id",))
    assert (raised.value.code, raised.value.field) == (UserErrorCode.INVALID_INPUT, ("id",))


def test_i4_a_customer_id_longer_than_any_id_is_an_invalid_reference_not_looked_up() -> None:
    long_id = "cus_" + "0" * 37
    violations = check_customer_reference(long_id, None, ("events", "0"), "e1")
    assert [(v.code, v.field) for v in violations] == [
        (UserErrorCode.CUSTOMER_REFERENCE_INVALID, ("events", "0", "customerId"))
    ]
    assert check_customer_reference(long_id[:-1], None, ("events", "0"), "e1") == []
    # Refused once, as a reference: not also as a customer that does not exist.
    assert (
        check_customers_exist(
            [EventDraft(event_id="e1", event_name="api.request", customer_id=long_id)], set()
        )
        == []
    )


def test_m3_a_clause_string_value_is_at_most_as_long_as_a_metadata_string() -> None:
    def clause(value: str) -> dict[str, object]:
        return {"clauses": [{"key": "plan", "operator": "CONTAINS", "value": value}]}

    assert parse_filter(clause("v" * MAX_FILTER_STRING_LENGTH), ("filter",))[1] == []
    _, violations = parse_filter(clause("v" * (MAX_FILTER_STRING_LENGTH + 1)), ("filter",))
    assert [(v.code, v.field) for v in violations] == [
        (UserErrorCode.FILTER_INVALID, ("filter", "clauses", "0", "value"))
    ]
    assert str(MAX_FILTER_STRING_LENGTH) in violations[0].message
