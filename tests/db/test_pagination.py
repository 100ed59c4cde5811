"""Cursors and page sizes of db/pagination.py (SPEC Q3), without a database."""

import base64
import json
import os
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from db.errors import BadUserInput, UserErrorCode
from db.ids import new_cursor_key
from db.pagination import MAX_CURSOR_LENGTH, Cursors, Keyset, Page, PageRequest, page_size
from db.repositories.customers import CUSTOMER_KEYSET
from db.settings import Settings
from tests.support import count_seals

BUSINESS = "bus_01JAAAAAAAAAAAAAAAAAAAAAAA"
OTHER_BUSINESS = "bus_01JBBBBBBBBBBBBBBBBBBBBBBB"
KEY = new_cursor_key()
OTHER_KEY = new_cursor_key()
CURSORS = Cursors(BUSINESS, KEY)
SETTINGS = Settings(default_page_size=50, max_page_size=100)

rows = sa.Table("rows", sa.MetaData(), sa.Column("timestamp"), sa.Column("sequence"))
TIMELINE = Keyset("timeline", (rows.c.timestamp, rows.c.sequence), (datetime, int), True)
MOMENT = datetime(2026, 1, 31, 12, 0, 0, 123_456, tzinfo=UTC)


def unpadded_base64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_cursor(payload: Any) -> str:
    """A cursor as this service spelled them before they were sealed: base64url JSON."""
    return unpadded_base64(json.dumps(payload).encode())


def sealed_cursor(plaintext: bytes, kind: str = "timeline", key: bytes = KEY) -> str:
    """Any bytes, sealed as the service seals a position: what only the key's holder can make."""
    return unpadded_base64(AESSIV(key).encrypt(plaintext, [kind.encode(), BUSINESS.encode()]))


def request(**fields: Any) -> PageRequest:
    return PageRequest(**fields, cursor_key=KEY)


def assert_invalid_cursor(keyset: Keyset, cursor: str, cursors: Cursors = CURSORS) -> BadUserInput:
    with pytest.raises(BadUserInput) as raised:
        cursors.decode(keyset, cursor)
    assert raised.value.code is UserErrorCode.INVALID_CURSOR
    assert raised.value.message == f"The cursor {cursor[:64]!r} is not a cursor of this connection."
    return raised.value


def assert_page_size_invalid(page_request: PageRequest, settings: Settings = SETTINGS) -> str:
    with pytest.raises(BadUserInput) as raised:
        page_size(page_request, settings)
    assert raised.value.code is UserErrorCode.PAGE_SIZE_INVALID
    return raised.value.message


# Cursors round-trip


@pytest.mark.parametrize("customer_id", ["cus_01JAAAAAAAAAAAAAAAAAAAAAAA", "", "ключ ✓", "a" * 300])
def test_q3_cursor_round_trip_of_a_string_keyset(customer_id: str) -> None:
    cursor = CURSORS.encode(CUSTOMER_KEYSET, (customer_id,))
    assert CURSORS.decode(CUSTOMER_KEYSET, cursor) == (customer_id,)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 31, 12, 0, 0, 123_456, tzinfo=UTC),
        datetime(2026, 1, 31, 12, 0, 0, 7, tzinfo=UTC),
        datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 1, 31, 7, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 1, 31, 17, 30, 0, 999_999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_q3_cursor_round_trip_keeps_the_instant_to_the_microsecond_in_utc(
    moment: datetime,
) -> None:
    cursor = CURSORS.encode(TIMELINE, (moment, 42))
    decoded_moment, sequence = CURSORS.decode(TIMELINE, cursor)
    assert decoded_moment == moment
    assert decoded_moment.microsecond == moment.astimezone(UTC).microsecond
    assert decoded_moment.tzinfo is UTC
    assert sequence == 42
    assert type(sequence) is int


@pytest.mark.parametrize("sequence", [0, 1, 2**63 - 1, -(2**63), -1])
def test_q3_cursor_round_trip_of_integers(sequence: int) -> None:
    cursor = CURSORS.encode(TIMELINE, (MOMENT, sequence))
    assert CURSORS.decode(TIMELINE, cursor) == (MOMENT, sequence)


def test_q3_cursors_are_url_safe_strings_without_padding() -> None:
    cursor = CURSORS.encode(TIMELINE, (MOMENT, 1))
    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    # 16 bytes of position and 16 of authentication tag.
    assert len(cursor) == 43


# Cursors sealed under a fixed key, as this service has always spelled them: a cursor a
# client holds across an upgrade must still open, so the sealed bytes may never change.
STABLE_KEY = bytes(range(64))
STABLE_CURSORS = [
    (
        TIMELINE,
        (datetime(2026, 1, 31, 12, 0, 0, 123_456, tzinfo=UTC), 42),
        "i6zC7QMl7MG4TUuQyfcLcBZvkrh6SyqfxEciGFbgpmc",
    ),
    (
        TIMELINE,
        (datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), -1),
        "mgz-uQfOv05FI0nCbSXwqGLJymBJ7yLkDYuG1Whzyrc",
    ),
    (
        CUSTOMER_KEYSET,
        ("cus_01JAAAAAAAAAAAAAAAAAAAAAAA",),
        "Y6MiDVyt2BUElHw7ufGQuvb7qFzINSn_HY-jKFI_rdO95E2ogEuo_R1dLKvIdmAh",
    ),
]


@pytest.mark.parametrize(("keyset", "position", "cursor"), STABLE_CURSORS)
def test_q3_a_position_is_sealed_as_it_always_was(
    keyset: Keyset, position: tuple[Any, ...], cursor: str
) -> None:
    cursors = Cursors(BUSINESS, STABLE_KEY)
    assert cursors.encode(keyset, position) == cursor
    assert cursors.decode(keyset, cursor) == position


@pytest.mark.parametrize(
    "position",
    [
        (MOMENT.replace(tzinfo=None), 1),  # naive: no instant
        (MOMENT, 2**63),  # beyond 8 bytes
        (MOMENT, 1.5),
        (MOMENT, "1"),
        ("2026-01-31T12:00:00Z", 1),
        (MOMENT,),
        (MOMENT, 1, 2),
    ],
)
def test_q3_a_position_of_the_wrong_shape_is_never_sealed(position: tuple[Any, ...]) -> None:
    with pytest.raises((ValueError, TypeError, OverflowError, struct.error)):
        CURSORS.encode(TIMELINE, position)


def test_q3_every_cursor_of_a_page_is_its_rows_cursor() -> None:
    page, rows_of_page = _timeline_page(5)
    expected = [
        CURSORS.encode(TIMELINE, (row["timestamp"], row["sequence"])) for row in rows_of_page
    ]
    assert page.all_cursors() == expected
    assert (page.start_cursor, page.end_cursor) == (expected[0], expected[-1])
    assert [page.cursor_at(index) for index in range(5)] == expected


def test_q3_a_pages_cursors_are_each_sealed_once_in_any_order_of_asking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page, rows_of_page = _timeline_page(4)
    sealed = count_seals(monkeypatch)
    # The last row's as pageInfo asks it, then one edge's, then every edge's, then again
    end, second = page.end_cursor, page.cursor_at(1)
    everyone = page.all_cursors()
    assert page.all_cursors() == everyone
    assert (page.start_cursor, page.cursor_at(3), page.cursor_at(-3)) == (everyone[0], end, second)
    assert everyone[1] == second
    assert everyone[-1] == end
    # Each row's position was sealed once, the asked ones first
    assert sealed == [
        (row["timestamp"], row["sequence"]) for row in (rows_of_page[i] for i in (3, 1, 0, 2))
    ]


async def _never() -> Any:
    raise AssertionError("not asked")


def _timeline_page(size: int) -> tuple[Page[str], list[dict[str, Any]]]:
    """A page of `size` rows one second apart on TIMELINE, and its rows."""
    rows_of_page = [
        {"timestamp": MOMENT + timedelta(seconds=n), "sequence": n} for n in range(size)
    ]
    page = Page(
        items=[str(n) for n in range(size)],
        rows=rows_of_page,
        keyset=TIMELINE,
        cursors=CURSORS,
        has_next_page=_never,
        has_previous_page=_never,
        count_total=_never,
    )
    return page, rows_of_page


def test_q3_different_positions_have_different_cursors() -> None:
    first = CURSORS.encode(CUSTOMER_KEYSET, ("cus_1",))
    second = CURSORS.encode(CUSTOMER_KEYSET, ("cus_2",))
    other_scope = Cursors(OTHER_BUSINESS, KEY).encode(CUSTOMER_KEYSET, ("cus_1",))
    other_key = Cursors(BUSINESS, OTHER_KEY).encode(CUSTOMER_KEYSET, ("cus_1",))
    assert len({first, second, other_scope, other_key}) == 4


def test_q3_a_position_always_gets_the_same_cursor() -> None:
    # Deterministic sealing (AES-SIV): no nonce to run out of, and nothing new to learn.
    assert CURSORS.encode(TIMELINE, (MOMENT, 7)) == Cursors(BUSINESS, KEY).encode(
        TIMELINE, (MOMENT, 7)
    )


# Cursors reveal nothing


@pytest.mark.parametrize("sequence", [987_654, 48_213_377, 2**62 + 12_345])
def test_t2_cursor_reveals_no_sequence_timestamp_business_or_kind(sequence: int) -> None:
    cursor = CURSORS.encode(TIMELINE, (MOMENT, sequence))
    sealed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    micros = (MOMENT - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    readable = [
        str(sequence).encode(),
        sequence.to_bytes(8, "big"),
        sequence.to_bytes(8, "little"),
        MOMENT.isoformat().encode(),
        str(micros).encode(),
        micros.to_bytes(8, "big"),
        micros.to_bytes(8, "little"),
        str(int(MOMENT.timestamp())).encode(),
        BUSINESS.encode(),
        BUSINESS.removeprefix("bus_").encode(),
        b"timeline",
        b"bus_",
    ]
    for revealing in readable:
        assert revealing not in sealed, revealing
        assert revealing.decode("latin-1") not in cursor, revealing


def test_t2_cursor_of_a_string_keyset_does_not_spell_its_id() -> None:
    customer_id = "cus_01JCCCCCCCCCCCCCCCCCCCCCCC"
    cursor = CURSORS.encode(CUSTOMER_KEYSET, (customer_id,))
    sealed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    for revealing in (customer_id, customer_id[4:], "CCCCCCCC", "customers", BUSINESS):
        assert revealing.encode() not in sealed
        assert revealing not in cursor


def test_t2_cursor_length_does_not_tell_the_size_of_a_sequence() -> None:
    lengths = {len(CURSORS.encode(TIMELINE, (MOMENT, 10**digits))) for digits in range(19)}
    assert lengths == {43}


# Cursors of another connection or another business (T2)


def test_q3_cursor_of_another_kind_of_connection_is_invalid() -> None:
    other_kind = Keyset("meters", CUSTOMER_KEYSET.columns, (str,))
    cursor = CURSORS.encode(other_kind, ("mtr_01",))
    assert_invalid_cursor(CUSTOMER_KEYSET, cursor)


def test_t2_cursor_issued_for_another_business_is_invalid() -> None:
    theirs = Cursors(OTHER_BUSINESS, OTHER_KEY)
    cursor = theirs.encode(CUSTOMER_KEYSET, ("cus_01",))
    assert theirs.decode(CUSTOMER_KEYSET, cursor) == ("cus_01",)
    assert_invalid_cursor(CUSTOMER_KEYSET, cursor)


def test_t2_cursor_bound_to_another_business_is_invalid_even_under_the_same_key() -> None:
    # The business id is authenticated too: a key given to two businesses by mistake
    # would still not let one use the other's cursors.
    cursor = Cursors(OTHER_BUSINESS, KEY).encode(CUSTOMER_KEYSET, ("cus_01",))
    assert_invalid_cursor(CUSTOMER_KEYSET, cursor)


def test_t2_cursor_sealed_with_another_key_is_invalid() -> None:
    cursor = Cursors(BUSINESS, OTHER_KEY).encode(CUSTOMER_KEYSET, ("cus_01",))
    assert_invalid_cursor(CUSTOMER_KEYSET, cursor)


def test_q3_cursor_of_a_keyset_with_other_columns_is_invalid() -> None:
    cursor = CURSORS.encode(TIMELINE, (MOMENT, 1))
    assert_invalid_cursor(CUSTOMER_KEYSET, cursor)
    customer_cursor = CURSORS.encode(CUSTOMER_KEYSET, ("cus_01",))
    assert_invalid_cursor(TIMELINE, customer_cursor)


# Tampered and malformed cursors


def test_q3_cursor_with_any_byte_flipped_is_invalid() -> None:
    cursor = CURSORS.encode(TIMELINE, (MOMENT, 42))
    sealed = base64.urlsafe_b64decode(cursor + "=")
    for index in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[index] ^= bit
            assert_invalid_cursor(TIMELINE, unpadded_base64(bytes(tampered)))


def test_q3_cursor_with_any_character_changed_or_cut_is_invalid() -> None:
    cursor = CURSORS.encode(TIMELINE, (MOMENT, 42))
    for index, character in enumerate(cursor):
        replacement = "A" if character != "A" else "B"
        assert_invalid_cursor(TIMELINE, cursor[:index] + replacement + cursor[index + 1 :])
    for length in range(len(cursor)):
        assert_invalid_cursor(TIMELINE, cursor[:length])
    assert_invalid_cursor(TIMELINE, cursor + "A")
    assert_invalid_cursor(TIMELINE, cursor + "AA")


def test_q3_cursor_spelled_in_another_base64_alphabet_or_with_noise_is_invalid() -> None:
    # The one spelling of the sealed bytes counts; base64 decoders skip what they do not know.
    for index in range(100):
        cursor = CURSORS.encode(TIMELINE, (MOMENT, index))
        standard = cursor.replace("-", "+").replace("_", "/")
        if standard != cursor:
            break
    assert_invalid_cursor(TIMELINE, standard)
    assert_invalid_cursor(TIMELINE, cursor[:10] + "!" + cursor[10:])
    assert_invalid_cursor(TIMELINE, cursor[:10] + " " + cursor[10:])
    assert_invalid_cursor(TIMELINE, cursor + "\n")


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
        base64.urlsafe_b64encode(os.urandom(32)).decode(),
        base64.urlsafe_b64encode(b'["customers", "').decode(),
    ],
)
def test_q3_garbage_cursor_is_invalid(cursor: str) -> None:
    assert_invalid_cursor(CUSTOMER_KEYSET, cursor)


@pytest.mark.parametrize(
    "payload",
    [
        ["customers", BUSINESS, "cus_01"],
        {"kind": "customers", "scope": BUSINESS, "id": "cus_01"},
        ["customers", BUSINESS, 1],
        [BUSINESS, "customers", "cus_01"],
    ],
)
def test_q3_unsealed_cursor_is_invalid(payload: Any) -> None:
    # The spelling of cursors before they were sealed: a client can no longer write one.
    assert_invalid_cursor(CUSTOMER_KEYSET, raw_cursor(payload))


@pytest.mark.parametrize(
    ("timestamp", "sequence"),
    [
        ("2026-01-31T12:00:00.5+01:00", 9),
        ("2026-01-31T12:00:00+00:00", 2**64),
        ("0001-01-01T00:00:00+14:00", 1),
    ],
)
def test_q3_forged_cursor_of_the_right_shape_is_invalid(timestamp: str, sequence: int) -> None:
    cursor = raw_cursor(["timeline", BUSINESS, timestamp, sequence])
    assert_invalid_cursor(TIMELINE, cursor)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        struct.pack(">q", 1),
        struct.pack(">qq", 1, 2) + b"\x00",
        struct.pack(">qqq", 1, 2, 3),
        # Microseconds beyond year 9999.
        struct.pack(">qq", 2**62, 1),
        struct.pack(">qq", -(2**62), 1),
    ],
)
def test_q3_sealed_cursor_of_the_wrong_shape_is_invalid(plaintext: bytes) -> None:
    # Only a holder of the key can make these; refused rather than failing all the same.
    assert_invalid_cursor(TIMELINE, sealed_cursor(plaintext))


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"\x00",
        struct.pack(">H", 7) + b"cus_01",
        struct.pack(">H", 5) + b"cus_01",
        struct.pack(">H", 2) + b"\xff\xfe",
        # PostgreSQL holds no U+0000 in text.
        struct.pack(">H", 5) + b"cus_\x00",
    ],
)
def test_q3_sealed_string_cursor_of_the_wrong_shape_is_invalid(plaintext: bytes) -> None:
    assert_invalid_cursor(CUSTOMER_KEYSET, sealed_cursor(plaintext, kind="customers"))


def test_q3_over_long_cursor_is_refused_before_decoding() -> None:
    # A well-formed cursor, only too long: refused on its length alone.
    cursor = CURSORS.encode(CUSTOMER_KEYSET, ("c" * 600,))
    assert len(cursor) > MAX_CURSOR_LENGTH
    error = assert_invalid_cursor(CUSTOMER_KEYSET, cursor)
    # The message quotes at most the first 64 characters of what was sent.
    assert cursor not in error.message
    assert len(error.message) < 150


def test_q3_cursor_of_exactly_the_maximum_length_is_decoded() -> None:
    for length in range(200, 400):
        cursor = CURSORS.encode(CUSTOMER_KEYSET, ("c" * length,))
        if len(cursor) == MAX_CURSOR_LENGTH:
            break
    else:
        # base64 of n bytes has no length congruent to 1 mod 4; 512 is reachable.
        pytest.fail("no cursor of exactly MAX_CURSOR_LENGTH characters")
    assert CURSORS.decode(CUSTOMER_KEYSET, cursor) == ("c" * length,)


def test_q3_cursor_padding_is_optional() -> None:
    cursor = CURSORS.encode(TIMELINE, (MOMENT, 12))
    padded = cursor + "=" * (-len(cursor) % 4)
    assert padded.endswith("=")
    assert CURSORS.decode(TIMELINE, padded) == (MOMENT, 12)
    assert CURSORS.decode(TIMELINE, cursor) == (MOMENT, 12)


def test_q3_page_request_keeps_its_key_out_of_its_repr() -> None:
    assert KEY.hex() not in repr(request(first=1))
    assert repr(KEY) not in repr(request(first=1))


# Keyset order


def dialect_sql(expression: Any, parameters: set[str] | None = None) -> str:
    """The SQL of `expression`, whose bound parameters must be `parameters` if given."""
    compiled = expression.compile(dialect=sa.dialects.sqlite.dialect(paramstyle="named"))
    if parameters is not None:
        assert parameters <= set(compiled.params)
    return str(compiled)


def test_q3_descending_keyset_seeks_below_the_cursor_and_reverses_for_last() -> None:
    assert dialect_sql(TIMELINE.is_beyond("after"), {"after_timestamp", "after_sequence"}) == (
        "(rows.timestamp, rows.sequence) < (:after_timestamp, :after_sequence)"
    )
    assert " > " in dialect_sql(TIMELINE.is_before("before"), {"before_timestamp"})
    assert [dialect_sql(term) for term in TIMELINE.order()] == [
        "rows.timestamp DESC",
        "rows.sequence DESC",
    ]
    assert [dialect_sql(term) for term in TIMELINE.order(reverse=True)] == [
        "rows.timestamp ASC",
        "rows.sequence ASC",
    ]


def test_q3_ascending_keyset_seeks_above_the_cursor() -> None:
    assert dialect_sql(CUSTOMER_KEYSET.is_beyond("after")) == "(customers.id) > (:after_id)"
    assert " < " in dialect_sql(CUSTOMER_KEYSET.is_before("before"))
    assert [dialect_sql(term) for term in CUSTOMER_KEYSET.order()] == ["customers.id ASC"]


def test_q3_a_position_is_bound_under_the_names_its_conditions_read() -> None:
    moment = datetime(2026, 1, 31, tzinfo=UTC)
    bound = TIMELINE.bound("after", (moment, 5))
    assert bound == {"after_timestamp": moment, "after_sequence": 5}
    compiled = TIMELINE.is_beyond("after").compile(dialect=sa.dialects.sqlite.dialect())
    assert set(compiled.params) == set(bound)
    with pytest.raises(ValueError, match="shorter"):
        TIMELINE.bound("after", (moment,))


def test_q3_position_of_a_row_reads_the_keyset_columns() -> None:
    moment = datetime(2026, 1, 31, tzinfo=UTC)

    columns = {"other": "ignored", "sequence": 3, "timestamp": moment}

    class FakeRow:  # stands in for SQLAlchemy's Row: its mapping view by column name
        _mapping = columns

    # asyncpg's Record (db.driver_reads) is read by column name itself, as a mapping is
    assert TIMELINE.position_of(FakeRow()) == (moment, 3)
    assert TIMELINE.position_of(columns) == (moment, 3)


# Page size


def test_q3_page_size_defaults_to_the_default_page_size() -> None:
    assert page_size(request(), SETTINGS) == 50
    assert page_size(request(after="x", before="y"), SETTINGS) == 50
    assert page_size(request(), Settings(default_page_size=7, max_page_size=100)) == 7


@pytest.mark.parametrize("size", [1, 2, 50, 99, 100])
def test_q3_page_size_of_1_to_the_maximum_is_accepted(size: int) -> None:
    assert page_size(request(first=size), SETTINGS) == size
    assert page_size(request(last=size), SETTINGS) == size


def test_q3_first_and_last_together_are_invalid() -> None:
    message = assert_page_size_invalid(request(first=5, last=5))
    assert "not both" in message
    assert_page_size_invalid(request(first=0, last=0))


@pytest.mark.parametrize("size", [0, -1, -100, 101, 10**9])
def test_q3_page_size_outside_1_to_the_maximum_is_invalid(size: int) -> None:
    message = assert_page_size_invalid(request(first=size))
    assert message == f"first must be between 1 and 100, not {size}."
    message = assert_page_size_invalid(request(last=size))
    assert message == f"last must be between 1 and 100, not {size}."


def test_q3_maximum_page_size_comes_from_the_settings() -> None:
    settings = Settings(default_page_size=5, max_page_size=10)
    assert page_size(request(first=10), settings) == 10
    assert_page_size_invalid(request(first=11), settings)
    assert_page_size_invalid(request(last=11), settings)
