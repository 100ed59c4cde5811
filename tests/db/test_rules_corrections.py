"""Pure unit tests of the correction rules (SPEC §3), without a database."""

from datetime import UTC, datetime, timedelta, timezone

from db.errors import UserErrorCode
from db.records import CustomerRecord, EventRecord
from db.rules.corrections import (
    Amendment,
    check_amendment,
    check_amendment_bounds,
    check_correction_limit,
    check_deprecation_bounds,
    check_event_amendable,
    check_reason,
    is_same_body,
)
from db.settings import Settings

MOMENT = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
CUSTOMER = CustomerRecord("cus_1", "bus_1", "acme", None, None, MOMENT)


def stored_event(**changes: object) -> EventRecord:
    fields: dict[str, object] = {
        "sequence": 1,
        "id": "evt_1",
        "business_id": "bus_1",
        "event_id": "e1",
        "customer_id": None,
        "external_customer_id": "acme",
        "event_name": "api.request",
        "timestamp": MOMENT,
        "metadata": {"a": 1},
        "ingested_at": MOMENT,
        "revision": 1,
        "deprecated_at": None,
        "deprecation_reason": None,
    } | changes
    return EventRecord(**fields)  # type: ignore[arg-type]


def amendment(**changes: object) -> Amendment:
    fields: dict[str, object] = {"event_id": "e1", "event_name": "api.request", "metadata": {}}
    return Amendment(**(fields | changes))  # type: ignore[arg-type]


def test_c1_valid_amendment_has_no_violations() -> None:
    assert check_amendment(amendment(), stored_event(), CUSTOMER, Settings()) == []


def test_c1_missing_metadata_is_invalid() -> None:
    violations = check_amendment(amendment(metadata=None), stored_event(), CUSTOMER, Settings())
    assert [(v.code, v.field) for v in violations] == [
        (UserErrorCode.METADATA_INVALID, ("metadata",))
    ]


def test_c1_timestamp_compares_instants_to_the_microsecond() -> None:
    same_instant = MOMENT.astimezone(timezone(timedelta(hours=9)))
    later = MOMENT + timedelta(microseconds=1)
    assert (
        check_amendment(amendment(timestamp=same_instant), stored_event(), CUSTOMER, Settings())
        == []
    )
    violations = check_amendment(amendment(timestamp=later), stored_event(), CUSTOMER, Settings())
    assert [v.code for v in violations] == [UserErrorCode.TIMESTAMP_MISMATCH]


def test_c1_either_reference_to_the_same_customer_matches() -> None:
    for reference in ({"customer_id": "cus_1"}, {"external_customer_id": "acme"}):
        assert check_amendment(amendment(**reference), stored_event(), CUSTOMER, Settings()) == []


def test_c1_references_to_another_customer_mismatch_each() -> None:
    violations = check_amendment(
        amendment(customer_id="cus_2", external_customer_id="globex"),
        stored_event(),
        CUSTOMER,
        Settings(),
    )
    assert [(v.code, v.field) for v in violations] == [
        (UserErrorCode.CUSTOMER_MISMATCH, ("customerId",)),
        (UserErrorCode.CUSTOMER_MISMATCH, ("externalCustomerId",)),
    ]


def test_c1_same_body_ignores_key_order_but_not_json_types() -> None:
    event = stored_event(metadata={"a": 1, "b": "x"})
    assert is_same_body(amendment(metadata={"b": "x", "a": 1}), event)
    assert not is_same_body(amendment(metadata={"a": 1.0, "b": "x"}), event)
    assert not is_same_body(amendment(metadata={"a": True, "b": "x"}), event)
    assert not is_same_body(amendment(metadata={"a": 1}), event)
    assert not is_same_body(amendment(event_name="other", metadata={"a": 1, "b": "x"}), event)


def test_c1_c2_reason_is_optional_and_at_most_1000_characters() -> None:
    settings = Settings()
    assert settings.max_reason_length == 1000
    assert check_reason(None, "e1", settings) == []
    assert check_reason("", "e1", settings) == []
    assert check_reason("r" * 1000, "e1", settings) == []
    violations = check_reason("r" * 1001, "e1", settings)
    assert [(v.code, v.field, v.event_id) for v in violations] == [
        (UserErrorCode.REASON_TOO_LONG, ("reason",), "e1")
    ]
    assert violations[0].message == "reason must be at most 1000 characters long, not 1001."


def test_c1_c2_reason_bound_is_the_setting() -> None:
    settings = Settings(max_reason_length=10)
    assert check_reason("r" * 10, "e1", settings) == []
    assert [v.code for v in check_reason("r" * 11, "e1", settings)] == [
        UserErrorCode.REASON_TOO_LONG
    ]


def test_c1_c2_reason_length_counts_characters_not_bytes() -> None:
    assert check_reason("é" * 1000, "e1", Settings()) == []
    assert check_reason("😀" * 1000, "e1", Settings()) == []


def test_c1_c2_bounds_are_checked_without_the_event_and_never_echo_a_long_event_id() -> None:
    settings = Settings()
    long_id = "e" * 2_000_000
    violations = check_deprecation_bounds(long_id, "r" * 1001, settings)
    assert [(v.code, v.field, v.event_id) for v in violations] == [
        (UserErrorCode.EVENT_ID_INVALID, ("eventId",), None),
        (UserErrorCode.REASON_TOO_LONG, ("reason",), None),
    ]
    assert all(len(v.message) < 200 for v in violations)
    assert check_deprecation_bounds("e" * 255, "r" * 1000, settings) == []


def test_c1_every_string_of_an_amendment_is_bounded() -> None:
    settings = Settings()
    at_bounds = amendment(
        event_id="e" * 255,
        event_name="n" * 255,
        customer_id="c" * 40,
        external_customer_id="x" * 255,
        reason="r" * 1000,
    )
    assert check_amendment_bounds(at_bounds, settings) == []
    over = amendment(
        event_id="e1",
        event_name="n" * 256,
        customer_id="c" * 41,
        external_customer_id="x" * 256,
        reason="r" * 1001,
    )
    assert [
        (v.code.value, v.field, v.event_id) for v in check_amendment_bounds(over, settings)
    ] == [
        ("REASON_TOO_LONG", ("reason",), "e1"),
        ("EVENT_NAME_INVALID", ("eventName",), "e1"),
        ("CUSTOMER_REFERENCE_INVALID", ("customerId",), "e1"),
        ("CUSTOMER_REFERENCE_INVALID", ("externalCustomerId",), "e1"),
    ]


def test_c3_deprecated_event_is_not_amendable() -> None:
    assert check_event_amendable(stored_event()) == []
    violations = check_event_amendable(stored_event(deprecated_at=MOMENT))
    assert [v.code for v in violations] == [UserErrorCode.EVENT_DEPRECATED]


def test_c5_limit_is_reached_at_the_limit() -> None:
    settings = Settings(correction_limit=3)
    assert check_correction_limit(2, "amendment", settings, "e1") == []
    violations = check_correction_limit(3, "amendment", settings, "e1")
    assert [v.code for v in violations] == [UserErrorCode.CORRECTION_LIMIT_EXCEEDED]
    assert "3 amendments" in violations[0].message


def test_c5_limit_of_zero_is_off() -> None:
    assert check_correction_limit(10_000, "deprecation", Settings(correction_limit=0), "e1") == []
