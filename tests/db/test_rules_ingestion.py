"""The ingestion rules of SPEC §2 (I1–I7, I9) as pure functions, without a database."""

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from db.errors import UserErrorCode, Violation
from db.records import EventDraft
from db.rules.ingestion import (
    MAX_METADATA_INTEGER,
    MIN_METADATA_INTEGER,
    check_batch_size,
    check_customer_reference,
    check_customers_exist,
    check_duplicates_in_batch,
    check_event_draft,
    check_event_id,
    check_event_name,
    check_metadata,
    check_not_deprecated,
    check_timestamp,
    event_path,
    shown_event_id,
    sort_by_event_index,
    utc_now,
)
from db.settings import Settings

# The values SPEC §10 gives, spelled out so that USAGE_EVENTS_* variables cannot move them.
DEFAULTS = Settings(
    max_batch_size=1000,
    ingest_past_window=timedelta(hours=1),
    ingest_future_window=timedelta(minutes=5),
    metadata_max_keys=50,
)
NOW = datetime(2026, 1, 31, 12, 0, 0, 500_000, tzinfo=UTC)
METADATA_PATH = ("events", "4", "metadata")


def summary(violations: list[Violation]) -> list[tuple[str, tuple[str, ...], str | None]]:
    return [(violation.code.value, violation.field, violation.event_id) for violation in violations]


def draft(event_id: str = "e1", **fields: Any) -> EventDraft:
    values: dict[str, Any] = {"event_name": "api.request", "external_customer_id": "cust-1"}
    return EventDraft(event_id=event_id, **(values | fields))


# shown_event_id and paths


@pytest.mark.parametrize("event_id", ["e", "Order-1", "x" * 255])
def test_shown_event_id_echoes_a_valid_event_id(event_id: str) -> None:
    assert shown_event_id(event_id) == event_id


@pytest.mark.parametrize("event_id", ["", "x" * 256, "x" * 5_000_000, None, 7, ["e1"]])
def test_shown_event_id_never_echoes_an_invalid_event_id(event_id: object) -> None:
    assert shown_event_id(event_id) is None


def test_event_path_is_made_of_strings() -> None:
    assert event_path(3) == ("events", "3")
    assert event_path(12, "metadata", "plan") == ("events", "12", "metadata", "plan")


# I1 — batch size


def test_i1_empty_batch() -> None:
    assert check_batch_size(0, DEFAULTS) == [
        Violation(UserErrorCode.EMPTY_BATCH, "The batch holds no events.", ("events",))
    ]


@pytest.mark.parametrize("count", [1, 2, 999, 1000])
def test_i1_batch_of_1_to_1000_events_is_accepted(count: int) -> None:
    assert check_batch_size(count, DEFAULTS) == []


@pytest.mark.parametrize("count", [1001, 1_000_000])
def test_i1_batch_of_more_than_1000_events_is_too_large(count: int) -> None:
    violations = check_batch_size(count, DEFAULTS)
    assert summary(violations) == [("BATCH_TOO_LARGE", ("events",), None)]
    assert str(count) in violations[0].message
    assert "1000" in violations[0].message


def test_i1_max_batch_size_comes_from_the_settings() -> None:
    small = Settings(max_batch_size=3)
    assert check_batch_size(3, small) == []
    assert summary(check_batch_size(4, small)) == [("BATCH_TOO_LARGE", ("events",), None)]
    assert summary(check_batch_size(0, small)) == [("EMPTY_BATCH", ("events",), None)]
    assert check_batch_size(1001, Settings(max_batch_size=5000)) == []


# I2 — eventId


@pytest.mark.parametrize("event_id", ["e", "x" * 255])
def test_i2_event_id_of_1_to_255_characters_is_valid(event_id: str) -> None:
    assert check_event_id(event_id, ("events", "0", "eventId")) == []


@pytest.mark.parametrize("event_id", ["", "x" * 256])
def test_i2_event_id_outside_1_to_255_characters_is_invalid(event_id: str) -> None:
    violations = check_event_id(event_id, ("events", "2", "eventId"))
    # The invalid eventId itself is never echoed back.
    assert summary(violations) == [("EVENT_ID_INVALID", ("events", "2", "eventId"), None)]
    assert str(len(event_id)) in violations[0].message


def test_i2_event_id_length_counts_characters_not_bytes() -> None:
    assert check_event_id("é" * 255, ("events", "0", "eventId")) == []


# I3 — eventName


@pytest.mark.parametrize("event_name", ["n", "n" * 255])
def test_i3_event_name_of_1_to_255_characters_is_valid(event_name: str) -> None:
    assert check_event_name(event_name, ("events", "0", "eventName"), "e1") == []


@pytest.mark.parametrize("event_name", ["", "n" * 256])
def test_i3_event_name_outside_1_to_255_characters_is_invalid(event_name: str) -> None:
    violations = check_event_name(event_name, ("events", "1", "eventName"), "e1")
    assert summary(violations) == [("EVENT_NAME_INVALID", ("events", "1", "eventName"), "e1")]
    assert str(len(event_name)) in violations[0].message


# I4 — customer reference


@pytest.mark.parametrize(
    ("customer_id", "external_customer_id"),
    [("cus_01", None), (None, "acme"), (None, "c" * 255)],
)
def test_i4_exactly_one_non_empty_reference_is_valid(
    customer_id: str | None, external_customer_id: str | None
) -> None:
    assert check_customer_reference(customer_id, external_customer_id, ("events", "0"), "e1") == []


@pytest.mark.parametrize(
    ("customer_id", "external_customer_id", "message_part"),
    [
        (None, None, "exactly one"),
        ("", "", "not both"),
        ("cus_01", "", "not both"),
        ("", "acme", "not both"),
        ("cus_01", "acme", "not both"),
    ],
)
def test_i4_no_reference_or_both_references_are_invalid(
    customer_id: str | None, external_customer_id: str | None, message_part: str
) -> None:
    violations = check_customer_reference(customer_id, external_customer_id, ("events", "3"), "e1")
    assert summary(violations) == [("CUSTOMER_REFERENCE_INVALID", ("events", "3"), "e1")]
    assert message_part in violations[0].message


@pytest.mark.parametrize(
    ("customer_id", "external_customer_id", "field"),
    [("", None, "customerId"), (None, "", "externalCustomerId")],
)
def test_i4_the_one_reference_given_must_not_be_empty(
    customer_id: str | None, external_customer_id: str | None, field: str
) -> None:
    violations = check_customer_reference(customer_id, external_customer_id, ("events", "3"), "e1")
    assert summary(violations) == [("CUSTOMER_REFERENCE_INVALID", ("events", "3", field), "e1")]
    assert "must not be empty" in violations[0].message


def test_i4_external_customer_id_longer_than_255_characters_is_invalid() -> None:
    violations = check_customer_reference(None, "c" * 256, ("events", "3"), "e1")
    assert summary(violations) == [
        ("CUSTOMER_REFERENCE_INVALID", ("events", "3", "externalCustomerId"), "e1")
    ]
    assert "c" * 256 not in violations[0].message


def test_i4_customer_id_must_name_an_existing_customer() -> None:
    drafts = [
        draft("a", customer_id="cus_known", external_customer_id=None),
        draft("b", customer_id="cus_unknown", external_customer_id=None),
        draft("c", external_customer_id="not-checked-here"),
        draft("", customer_id="cus_other", external_customer_id=None),
    ]
    violations = check_customers_exist(drafts, {"cus_known"})
    assert summary(violations) == [
        ("CUSTOMER_NOT_FOUND", ("events", "1", "customerId"), "b"),
        ("CUSTOMER_NOT_FOUND", ("events", "3", "customerId"), None),
    ]


def test_i4_a_customer_id_that_is_no_customer_id_points_to_external_customer_id() -> None:
    drafts = [
        draft("a", customer_id="acme", external_customer_id=None),
        draft("b", customer_id="cus_unknown", external_customer_id=None),
    ]
    violations = check_customers_exist(drafts, set())
    assert summary(violations) == [
        ("CUSTOMER_NOT_FOUND", ("events", "0", "customerId"), "a"),
        ("CUSTOMER_NOT_FOUND", ("events", "1", "customerId"), "b"),
    ]
    assert "looks like your own id" in violations[0].message
    assert "externalCustomerId" in violations[0].message
    # A well-formed id says only that no such customer exists (of this business: T2).
    assert violations[1].message == "No customer with this id exists in your business."


def test_i4_external_customer_ids_need_not_exist() -> None:
    drafts = [draft("a", external_customer_id="later-co"), draft("b", external_customer_id="x")]
    assert check_customers_exist(drafts, set()) == []


# I5 — timestamp


def test_i5_timestamp_at_the_edges_of_both_windows_is_accepted() -> None:
    path = ("events", "0", "timestamp")
    oldest = NOW - DEFAULTS.ingest_past_window
    newest = NOW + DEFAULTS.ingest_future_window
    for moment in (oldest, NOW, newest):
        assert check_timestamp(moment, NOW, DEFAULTS, path, "e1") == []


def test_i5_timestamp_one_microsecond_older_than_the_past_window() -> None:
    path = ("events", "0", "timestamp")
    moment = NOW - timedelta(hours=1, microseconds=1)
    violations = check_timestamp(moment, NOW, DEFAULTS, path, "e1")
    assert summary(violations) == [("TIMESTAMP_TOO_OLD", path, "e1")]
    # The way to load older history is a backfill; the message says how.
    assert "older than the ingestion window of 3600 seconds" in violations[0].message
    assert "createBackfill" in violations[0].message
    assert "backfillId" in violations[0].message


def test_i5_the_past_window_is_said_in_seconds_as_the_setting_takes_it() -> None:
    path = ("events", "0", "timestamp")
    half_a_second = Settings(ingest_past_window=timedelta(milliseconds=500))
    violations = check_timestamp(NOW - timedelta(seconds=1), NOW, half_a_second, path, None)
    assert "ingestion window of 0.5 seconds" in violations[0].message


def test_i5_timestamp_one_microsecond_beyond_the_future_window() -> None:
    path = ("events", "0", "timestamp")
    moment = NOW + timedelta(minutes=5, microseconds=1)
    violations = check_timestamp(moment, NOW, DEFAULTS, path, "e1")
    assert summary(violations) == [("TIMESTAMP_TOO_FAR_IN_FUTURE", path, "e1")]


def test_i5_timestamps_in_other_offsets_are_compared_as_instants() -> None:
    path = ("events", "0", "timestamp")
    in_new_york = (NOW - timedelta(minutes=59)).astimezone(timezone(timedelta(hours=-5)))
    assert check_timestamp(in_new_york, NOW, DEFAULTS, path, "e1") == []
    in_tokyo = (NOW - timedelta(minutes=61)).astimezone(timezone(timedelta(hours=9)))
    assert summary(check_timestamp(in_tokyo, NOW, DEFAULTS, path, "e1")) == [
        ("TIMESTAMP_TOO_OLD", path, "e1")
    ]


def test_i5_windows_come_from_the_settings() -> None:
    path = ("events", "0", "timestamp")
    narrow = Settings(ingest_past_window=timedelta(seconds=10), ingest_future_window=0)
    assert check_timestamp(NOW - timedelta(seconds=10), NOW, narrow, path, None) == []
    assert summary(check_timestamp(NOW - timedelta(seconds=11), NOW, narrow, path, None)) == [
        ("TIMESTAMP_TOO_OLD", path, None)
    ]
    assert summary(check_timestamp(NOW + timedelta(microseconds=1), NOW, narrow, path, None)) == [
        ("TIMESTAMP_TOO_FAR_IN_FUTURE", path, None)
    ]


def test_i5_utc_now_is_aware_utc() -> None:
    before = datetime.now(UTC)
    now = utc_now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= datetime.now(UTC)


# I6 — metadata


def test_i6_absent_metadata_is_valid() -> None:
    assert check_metadata(None, METADATA_PATH, "e1", DEFAULTS) == []
    assert check_metadata({}, METADATA_PATH, "e1", DEFAULTS) == []


@pytest.mark.parametrize(
    ("metadata", "type_name"),
    [
        ([1, 2], "an array"),
        ("text", "a string"),
        (3, "a number"),
        (1.5, "a number"),
        (True, "a boolean"),
        (False, "a boolean"),
    ],
)
def test_i6_metadata_that_is_not_an_object(metadata: Any, type_name: str) -> None:
    violations = check_metadata(metadata, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_INVALID", METADATA_PATH, "e1")]
    assert violations[0].message == f"metadata must be a JSON object, not {type_name}."


def test_i6_fifty_keys_are_valid_and_fifty_one_are_too_many() -> None:
    fifty = {f"k{index}": index for index in range(50)}
    assert check_metadata(fifty, METADATA_PATH, "e1", DEFAULTS) == []
    violations = check_metadata(fifty | {"one-more": 1}, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_TOO_MANY_KEYS", METADATA_PATH, "e1")]
    assert "51" in violations[0].message


def test_i6_max_keys_comes_from_the_settings() -> None:
    none_allowed = Settings(metadata_max_keys=0)
    assert check_metadata({}, METADATA_PATH, "e1", none_allowed) == []
    assert summary(check_metadata({"a": 1}, METADATA_PATH, "e1", none_allowed)) == [
        ("METADATA_TOO_MANY_KEYS", METADATA_PATH, "e1")
    ]


@pytest.mark.parametrize("key", ["k", "k" * 100, "ключ", "a b.c/d"])
def test_i6_keys_of_1_to_100_characters_are_valid(key: str) -> None:
    assert check_metadata({key: 1}, METADATA_PATH, "e1", DEFAULTS) == []


def test_i6_empty_key_is_invalid() -> None:
    violations = check_metadata({"": 1}, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_KEY_INVALID", (*METADATA_PATH, ""), "e1")]


@pytest.mark.parametrize("length", [101, 5_000_000])
def test_i6_key_longer_than_100_characters_is_invalid_and_truncated_in_the_path(
    length: int,
) -> None:
    violations = check_metadata({"k" * length: 1}, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_KEY_INVALID", (*METADATA_PATH, "k" * 100), "e1")]
    assert str(length) in violations[0].message
    assert len(violations[0].message) < 200


@pytest.mark.parametrize("value", ["", "v", "v" * 500, "é" * 500])
def test_i6_strings_of_at_most_500_characters_are_valid(value: str) -> None:
    assert check_metadata({"plan": value}, METADATA_PATH, "e1", DEFAULTS) == []


@pytest.mark.parametrize("length", [501, 100_000])
def test_i6_strings_longer_than_500_characters_are_too_long(length: int) -> None:
    violations = check_metadata({"plan": "v" * length}, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_VALUE_TOO_LONG", (*METADATA_PATH, "plan"), "e1")]
    assert str(length) in violations[0].message
    assert "v" * 501 not in violations[0].message


@pytest.mark.parametrize("value", [True, False])
def test_i6_booleans_are_valid_and_not_numbers(value: bool) -> None:
    assert check_metadata({"flag": value}, METADATA_PATH, "e1", DEFAULTS) == []


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, MIN_METADATA_INTEGER, MAX_METADATA_INTEGER, -(2**63), 2**63 - 1],
)
def test_i6_integers_within_64_bits_are_valid(value: int) -> None:
    assert check_metadata({"count": value}, METADATA_PATH, "e1", DEFAULTS) == []


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64, 10**100])
def test_i6_integers_beyond_64_bits_are_invalid(value: int) -> None:
    violations = check_metadata({"count": value}, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_VALUE_INVALID", (*METADATA_PATH, "count"), "e1")]
    assert "64 bits" in violations[0].message


@pytest.mark.parametrize("value", [0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, float(2**63)])
def test_i6_finite_floats_are_valid(value: float) -> None:
    assert check_metadata({"ratio": value}, METADATA_PATH, "e1", DEFAULTS) == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_i6_nan_and_infinity_are_invalid(value: float) -> None:
    violations = check_metadata({"ratio": value}, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_VALUE_INVALID", (*METADATA_PATH, "ratio"), "e1")]
    assert "finite" in violations[0].message


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (None, "null"),
        ({"tier": 1}, "an object"),
        ({}, "an object"),
        ([1, 2], "an array"),
        ([], "an array"),
    ],
)
def test_i6_null_objects_and_arrays_are_invalid_values(value: Any, type_name: str) -> None:
    violations = check_metadata({"plan": value}, METADATA_PATH, "e1", DEFAULTS)
    assert summary(violations) == [("METADATA_VALUE_INVALID", (*METADATA_PATH, "plan"), "e1")]
    assert violations[0].message.endswith(f"not {type_name}.")


def test_i6_every_violation_is_reported_in_key_order() -> None:
    metadata: dict[str, Any] = {f"k{index}": index for index in range(48)}
    metadata |= {"": "empty key", "x" * 101: "v" * 501, "nested": [1], "ok": "fine"}
    violations = check_metadata(metadata, METADATA_PATH, None, DEFAULTS)
    assert summary(violations) == [
        ("METADATA_TOO_MANY_KEYS", METADATA_PATH, None),
        ("METADATA_KEY_INVALID", (*METADATA_PATH, ""), None),
        ("METADATA_KEY_INVALID", (*METADATA_PATH, "x" * 100), None),
        ("METADATA_VALUE_TOO_LONG", (*METADATA_PATH, "x" * 100), None),
        ("METADATA_VALUE_INVALID", (*METADATA_PATH, "nested"), None),
    ]


def json_values() -> st.SearchStrategy[Any]:
    """Anything JSON can hold, and the values just past each metadata boundary."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
        st.floats(),
        st.text(max_size=8),
        st.integers(min_value=495, max_value=505).map(lambda length: "v" * length),
    )
    return st.recursive(scalars, _json_containers, max_leaves=5)


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function, not a lambda: hypothesis reads the source of `extend` to check it
    # recurses, and a lambda's source is found less reliably.
    return st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children))


# Mostly valid values and keys, so that both answers of the property come up often.
valid_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.integers(min_value=495, max_value=500).map(lambda length: "v" * length),
)
metadata_values = st.one_of(valid_values, valid_values, valid_values, json_values())
metadata_keys = st.one_of(
    st.text(min_size=1, max_size=6),
    st.text(max_size=6),
    st.integers(min_value=97, max_value=103).map(lambda length: "k" * length),
)


def is_valid_value(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value <= 2**63 - 1
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= 500
    return False


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    metadata=st.dictionaries(metadata_keys, metadata_values, max_size=6),
    max_keys=st.integers(min_value=0, max_value=8),
)
def test_i6_metadata_is_valid_exactly_when_every_key_and_value_is(
    metadata: dict[str, Any], max_keys: int
) -> None:
    expected_valid = (
        len(metadata) <= max_keys
        and all(1 <= len(key) <= 100 for key in metadata)
        and all(is_valid_value(value) for value in metadata.values())
    )
    violations = check_metadata(metadata, METADATA_PATH, "e1", Settings(metadata_max_keys=max_keys))
    assert (violations == []) == expected_valid
    for violation in violations:
        assert violation.field[: len(METADATA_PATH)] == METADATA_PATH
        assert violation.event_id == "e1"
        assert violation.message


# I7 — duplicates inside one request


def test_i7_every_repeated_occurrence_is_an_error() -> None:
    violations = check_duplicates_in_batch(["a", "b", "a", "c", "b", "a"])
    assert summary(violations) == [
        ("DUPLICATE_EVENT_ID_IN_BATCH", ("events", "2", "eventId"), "a"),
        ("DUPLICATE_EVENT_ID_IN_BATCH", ("events", "4", "eventId"), "b"),
        ("DUPLICATE_EVENT_ID_IN_BATCH", ("events", "5", "eventId"), "a"),
    ]
    assert violations[0].message == "This eventId appears more than once in the request."


def test_i7_distinct_event_ids_are_valid() -> None:
    assert check_duplicates_in_batch([]) == []
    assert check_duplicates_in_batch(["a", "b", "c"]) == []


def test_i7_event_ids_differing_in_case_are_not_duplicates() -> None:
    assert check_duplicates_in_batch(["Order-1", "order-1", "ORDER-1"]) == []


def test_i7_duplicated_invalid_event_ids_are_not_echoed() -> None:
    long_id = "x" * 256
    violations = check_duplicates_in_batch(["", "", long_id, long_id])
    assert summary(violations) == [
        ("DUPLICATE_EVENT_ID_IN_BATCH", ("events", "1", "eventId"), None),
        ("DUPLICATE_EVENT_ID_IN_BATCH", ("events", "3", "eventId"), None),
    ]


# I9 — deprecated eventIds


def test_i9_deprecated_event_ids_cannot_be_sent_again() -> None:
    violations = check_not_deprecated(
        ["fresh", "gone", "also-fresh", "gone-too"], {"gone", "gone-too"}
    )
    assert summary(violations) == [
        ("EVENT_DEPRECATED", ("events", "1", "eventId"), "gone"),
        ("EVENT_DEPRECATED", ("events", "3", "eventId"), "gone-too"),
    ]
    assert "deprecated" in violations[0].message


def test_i9_no_deprecated_event_ids_means_no_violations() -> None:
    assert check_not_deprecated(["a", "b"], set()) == []
    assert check_not_deprecated(["a", "b"], {"A", "c"}) == []


# I2–I6 together, for one event of a batch


def test_i10_a_valid_draft_has_no_violations() -> None:
    valid = draft("e1", timestamp=NOW - timedelta(minutes=5), metadata={"tokens": 12, "model": "m"})
    assert check_event_draft(0, valid, NOW, DEFAULTS) == []


def test_i10_a_draft_without_timestamp_or_metadata_is_valid() -> None:
    assert check_event_draft(0, draft("e1"), NOW, DEFAULTS) == []


def test_i10_every_rule_of_a_draft_is_checked_with_its_path() -> None:
    bad = draft(
        "e9",
        event_name="",
        external_customer_id=None,
        timestamp=NOW + timedelta(hours=1),
        metadata={"plan": None},
    )
    assert summary(check_event_draft(7, bad, NOW, DEFAULTS)) == [
        ("EVENT_NAME_INVALID", ("events", "7", "eventName"), "e9"),
        ("CUSTOMER_REFERENCE_INVALID", ("events", "7"), "e9"),
        ("TIMESTAMP_TOO_FAR_IN_FUTURE", ("events", "7", "timestamp"), "e9"),
        ("METADATA_VALUE_INVALID", ("events", "7", "metadata", "plan"), "e9"),
    ]


@pytest.mark.parametrize("event_id", ["", "x" * 256])
def test_i10_an_invalid_event_id_is_never_echoed_on_any_violation(event_id: str) -> None:
    bad = draft(event_id, event_name="", metadata="not an object")
    violations = check_event_draft(0, bad, NOW, DEFAULTS)
    assert summary(violations) == [
        ("EVENT_ID_INVALID", ("events", "0", "eventId"), None),
        ("EVENT_NAME_INVALID", ("events", "0", "eventName"), None),
        ("METADATA_INVALID", ("events", "0", "metadata"), None),
    ]


# Ordering of the reported errors


def test_sort_by_event_index_puts_batch_errors_first_then_events_in_numeric_order() -> None:
    def violation(*field: str) -> Violation:
        return Violation(UserErrorCode.INVALID_INPUT, "m", field)

    unsorted = [
        violation("events", "10", "eventId"),
        violation("events", "2", "metadata", "b"),
        violation("events"),
        violation("events", "2", "metadata", "a"),
        violation("events", "0"),
        violation("input", "externalId"),
        violation("events", "10", "eventName"),
    ]
    assert [item.field for item in sort_by_event_index(unsorted)] == [
        ("events",),
        ("input", "externalId"),
        ("events", "0"),
        # Within one event, the order in which the rules reported is kept.
        ("events", "2", "metadata", "b"),
        ("events", "2", "metadata", "a"),
        ("events", "10", "eventId"),
        ("events", "10", "eventName"),
    ]


def test_sort_by_event_index_of_nothing_is_empty() -> None:
    assert sort_by_event_index([]) == []
    assert sort_by_event_index(iter([])) == []
