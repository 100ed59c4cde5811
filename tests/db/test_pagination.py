"""Cursors and page sizes of db/pagination.py (SPEC Q3), without a database."""

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from db.errors import BadUserInput, UserErrorCode
from db.pagination import (
    MAX_CURSOR_LENGTH,
    Keyset,
    PageRequest,
    decode_cursor,
    encode_cursor,
    page_size,
)
from db.repositories.customers import CUSTOMER_KEYSET
from db.settings import Settings

BUSINESS = "bus_01JAAAAAAAAAAAAAAAAAAAAAAA"
OTHER_BUSINESS = "bus_01JBBBBBBBBBBBBBBBBBBBBBBB"
SETTINGS = Settings(default_page_size=50, max_page_size=100)

rows = sa.Table("rows", sa.MetaData(), sa.Column("timestamp"), sa.Column("sequence"))
TIMELINE = Keyset("timeline", (rows.c.timestamp, rows.c.sequence), (datetime, int), True)


def raw_cursor(payload: Any) -> str:
    """A cursor as a client could forge it: any JSON, base64url-encoded like the real ones."""
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def assert_invalid_cursor(keyset: Keyset, scope: str, cursor: str) -> BadUserInput:
    with pytest.raises(BadUserInput) as raised:
        decode_cursor(keyset, scope, cursor)
    assert raised.value.code is UserErrorCode.INVALID_CURSOR
    return raised.value


def assert_page_size_invalid(request: PageRequest, settings: Settings = SETTINGS) -> str:
    with pytest.raises(BadUserInput) as raised:
        page_size(request, settings)
    assert raised.value.code is UserErrorCode.PAGE_SIZE_INVALID
    return raised.value.message


# Cursors round-trip


@pytest.mark.parametrize("customer_id", ["cus_01JAAAAAAAAAAAAAAAAAAAAAAA", "", "ключ ✓", "a" * 300])
def test_q3_cursor_round_trip_of_a_string_keyset(customer_id: str) -> None:
    cursor = encode_cursor(CUSTOMER_KEYSET, BUSINESS, (customer_id,))
    assert decode_cursor(CUSTOMER_KEYSET, BUSINESS, cursor) == (customer_id,)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 31, 12, 0, 0, 123_456, tzinfo=UTC),
        datetime(2026, 1, 31, 12, 0, 0, 7, tzinfo=UTC),
        datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 1, 31, 7, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 1, 31, 17, 30, 0, 999_999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_q3_cursor_round_trip_keeps_the_instant_to_the_microsecond_in_utc(
    moment: datetime,
) -> None:
    cursor = encode_cursor(TIMELINE, BUSINESS, (moment, 42))
    decoded_moment, sequence = decode_cursor(TIMELINE, BUSINESS, cursor)
    assert decoded_moment == moment
    assert decoded_moment.microsecond == moment.astimezone(UTC).microsecond
    assert decoded_moment.tzinfo is UTC
    assert sequence == 42
    assert type(sequence) is int


@pytest.mark.parametrize("sequence", [0, 1, 2**63 - 1, -1])
def test_q3_cursor_round_trip_of_integers(sequence: int) -> None:
    moment = datetime(2026, 1, 31, tzinfo=UTC)
    cursor = encode_cursor(TIMELINE, BUSINESS, (moment, sequence))
    assert decode_cursor(TIMELINE, BUSINESS, cursor) == (moment, sequence)


def test_q3_cursors_are_opaque_url_safe_strings_without_padding() -> None:
    cursor = encode_cursor(TIMELINE, BUSINESS, (datetime(2026, 1, 31, tzinfo=UTC), 1))
    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(cursor) <= MAX_CURSOR_LENGTH


def test_q3_different_positions_have_different_cursors() -> None:
    first = encode_cursor(CUSTOMER_KEYSET, BUSINESS, ("cus_1",))
    second = encode_cursor(CUSTOMER_KEYSET, BUSINESS, ("cus_2",))
    other_scope = encode_cursor(CUSTOMER_KEYSET, OTHER_BUSINESS, ("cus_1",))
    assert len({first, second, other_scope}) == 3


# Cursors of another connection or another business (T2)


def test_q3_cursor_of_another_kind_of_connection_is_invalid() -> None:
    other_kind = Keyset("meters", CUSTOMER_KEYSET.columns, (str,))
    cursor = encode_cursor(other_kind, BUSINESS, ("mtr_01",))
    assert_invalid_cursor(CUSTOMER_KEYSET, BUSINESS, cursor)


def test_t2_cursor_issued_for_another_business_is_invalid() -> None:
    cursor = encode_cursor(CUSTOMER_KEYSET, OTHER_BUSINESS, ("cus_01",))
    assert decode_cursor(CUSTOMER_KEYSET, OTHER_BUSINESS, cursor) == ("cus_01",)
    assert_invalid_cursor(CUSTOMER_KEYSET, BUSINESS, cursor)


def test_q3_cursor_of_a_keyset_with_other_columns_is_invalid() -> None:
    cursor = encode_cursor(TIMELINE, BUSINESS, (datetime(2026, 1, 31, tzinfo=UTC), 1))
    assert_invalid_cursor(CUSTOMER_KEYSET, BUSINESS, cursor)
    customer_cursor = encode_cursor(CUSTOMER_KEYSET, BUSINESS, ("cus_01",))
    assert_invalid_cursor(TIMELINE, BUSINESS, customer_cursor)


# Malformed cursors


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "not a cursor at all",
        "!!!!",
        "====",
        "é",
        "\x00",
        "%%%%%%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
        base64.urlsafe_b64encode(b'["customers", "').decode(),
    ],
)
def test_q3_garbage_cursor_is_invalid(cursor: str) -> None:
    assert_invalid_cursor(CUSTOMER_KEYSET, BUSINESS, cursor)


def test_q3_over_long_cursor_is_refused_before_decoding() -> None:
    # A well-formed cursor, only too long: refused on its length alone.
    cursor = encode_cursor(CUSTOMER_KEYSET, BUSINESS, ("c" * 600,))
    assert len(cursor) > MAX_CURSOR_LENGTH
    error = assert_invalid_cursor(CUSTOMER_KEYSET, BUSINESS, cursor)
    # The message quotes at most the first 64 characters of what was sent.
    assert cursor not in error.message
    assert len(error.message) < 150


def test_q3_cursor_of_exactly_the_maximum_length_is_decoded() -> None:
    for length in range(200, 400):
        cursor = encode_cursor(CUSTOMER_KEYSET, BUSINESS, ("c" * length,))
        if len(cursor) == MAX_CURSOR_LENGTH:
            break
    else:
        # base64 of n bytes has no length congruent to 1 mod 4; 512 is reachable.
        pytest.fail("no cursor of exactly MAX_CURSOR_LENGTH characters")
    assert decode_cursor(CUSTOMER_KEYSET, BUSINESS, cursor) == ("c" * length,)


@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "customers", "scope": BUSINESS, "id": "cus_01"},
        "customers",
        42,
        None,
        [],
        ["customers"],
        ["customers", BUSINESS],
        ["customers", BUSINESS, "cus_01", "extra"],
        [BUSINESS, "customers", "cus_01"],
    ],
)
def test_q3_cursor_of_the_wrong_shape_is_invalid(payload: Any) -> None:
    assert_invalid_cursor(CUSTOMER_KEYSET, BUSINESS, raw_cursor(payload))


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["cus_01"], {"id": "cus_01"}])
def test_q3_cursor_with_a_value_of_the_wrong_type_is_invalid(value: Any) -> None:
    assert_invalid_cursor(CUSTOMER_KEYSET, BUSINESS, raw_cursor(["customers", BUSINESS, value]))


@pytest.mark.parametrize(
    ("timestamp", "sequence"),
    [
        ("2026-01-31T12:00:00+00:00", "1"),
        ("2026-01-31T12:00:00+00:00", 1.0),
        ("2026-01-31T12:00:00+00:00", True),
        ("2026-01-31T12:00:00+00:00", None),
        ("2026-01-31T12:00:00", 1),
        ("2026-01-31", 1),
        ("yesterday", 1),
        ("", 1),
        (1769860800, 1),
        (None, 1),
        (["2026-01-31T12:00:00+00:00"], 1),
    ],
)
def test_q3_cursor_with_a_bad_timestamp_or_sequence_is_invalid(
    timestamp: Any, sequence: Any
) -> None:
    cursor = raw_cursor(["timeline", BUSINESS, timestamp, sequence])
    assert_invalid_cursor(TIMELINE, BUSINESS, cursor)


def test_q3_forged_cursor_of_the_right_shape_is_accepted() -> None:
    # Cursors are opaque, not signed: a well-formed one for the caller's own business
    # only names a position, which can do no harm.
    cursor = raw_cursor(["timeline", BUSINESS, "2026-01-31T12:00:00.5+01:00", 9])
    assert decode_cursor(TIMELINE, BUSINESS, cursor) == (
        datetime(2026, 1, 31, 11, 0, 0, 500_000, tzinfo=UTC),
        9,
    )


def test_q3_cursor_padding_is_optional() -> None:
    padded = base64.urlsafe_b64encode(orjson.dumps(["customers", BUSINESS, "cus_12"])).decode()
    assert padded.endswith("=")
    assert decode_cursor(CUSTOMER_KEYSET, BUSINESS, padded) == ("cus_12",)
    assert decode_cursor(CUSTOMER_KEYSET, BUSINESS, padded.rstrip("=")) == ("cus_12",)


# Keyset order


def dialect_sql(expression: Any) -> str:
    compiled = expression.compile(
        dialect=sa.dialects.sqlite.dialect(),
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


def test_q3_descending_keyset_seeks_below_the_cursor_and_reverses_for_last() -> None:
    position = (datetime(2026, 1, 31, tzinfo=UTC), 5)
    assert " < " in dialect_sql(TIMELINE.is_beyond(position))
    assert " > " in dialect_sql(TIMELINE.is_before(position))
    assert [dialect_sql(term) for term in TIMELINE.order()] == [
        "rows.timestamp DESC",
        "rows.sequence DESC",
    ]
    assert [dialect_sql(term) for term in TIMELINE.order(reverse=True)] == [
        "rows.timestamp ASC",
        "rows.sequence ASC",
    ]


def test_q3_ascending_keyset_seeks_above_the_cursor() -> None:
    assert " > " in dialect_sql(CUSTOMER_KEYSET.is_beyond(("cus_1",)))
    assert " < " in dialect_sql(CUSTOMER_KEYSET.is_before(("cus_1",)))
    assert [dialect_sql(term) for term in CUSTOMER_KEYSET.order()] == ["customers.id ASC"]


def test_q3_position_of_a_row_reads_the_keyset_columns() -> None:
    moment = datetime(2026, 1, 31, tzinfo=UTC)

    class FakeRow:  # stands in for a result row: attributes named after the columns
        timestamp = moment
        sequence = 3
        other = "ignored"

    assert TIMELINE.position_of(FakeRow()) == (moment, 3)


# Page size


def test_q3_page_size_defaults_to_the_default_page_size() -> None:
    assert page_size(PageRequest(), SETTINGS) == 50
    assert page_size(PageRequest(after="x", before="y"), SETTINGS) == 50
    assert page_size(PageRequest(), Settings(default_page_size=7, max_page_size=100)) == 7


@pytest.mark.parametrize("size", [1, 2, 50, 99, 100])
def test_q3_page_size_of_1_to_the_maximum_is_accepted(size: int) -> None:
    assert page_size(PageRequest(first=size), SETTINGS) == size
    assert page_size(PageRequest(last=size), SETTINGS) == size


def test_q3_first_and_last_together_are_invalid() -> None:
    message = assert_page_size_invalid(PageRequest(first=5, last=5))
    assert "not both" in message
    assert_page_size_invalid(PageRequest(first=0, last=0))


@pytest.mark.parametrize("size", [0, -1, -100, 101, 10**9])
def test_q3_page_size_outside_1_to_the_maximum_is_invalid(size: int) -> None:
    message = assert_page_size_invalid(PageRequest(first=size))
    assert message == f"first must be between 1 and 100, not {size}."
    message = assert_page_size_invalid(PageRequest(last=size))
    assert message == f"last must be between 1 and 100, not {size}."


def test_q3_maximum_page_size_comes_from_the_settings() -> None:
    settings = Settings(default_page_size=5, max_page_size=10)
    assert page_size(PageRequest(first=10), settings) == 10
    assert_page_size_invalid(PageRequest(first=11), settings)
    assert_page_size_invalid(PageRequest(last=11), settings)
