"""The SQLModel tables. Every row belongs to exactly one business (SPEC §1)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from db import ids
from db.column_types import BigIntegerKey, ExactNumber, JSONDocument, UTCDateTime

# Stable constraint names, so that Alembic migrations can name what they create.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Business(SQLModel, table=True):
    __tablename__ = "businesses"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=255)
    created_at: datetime = Field(sa_type=UTCDateTime)
    # Seals the business's pagination cursors (db.pagination.Cursors). Random per business;
    # the default gives one to a row inserted by any path, not only BusinessRepository.create.
    cursor_key: bytes = Field(default_factory=ids.new_cursor_key, sa_type=sa.LargeBinary)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    business_id: str = Field(foreign_key="businesses.id", index=True, max_length=40)
    # SHA-256 of the secret; the secret itself is never stored.
    secret_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Customer(SQLModel, table=True):
    __tablename__ = "customers"
    __table_args__ = (
        # NULL external ids are distinct on both databases, so many customers may lack one.
        sa.UniqueConstraint("business_id", "external_id"),
        # Cursor paging of a business's customers, in id (= creation) order.
        sa.Index("ix_customers_business_id_id", "business_id", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    business_id: str = Field(foreign_key="businesses.id", max_length=40)
    external_id: str | None = Field(default=None, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(sa_type=UTCDateTime)


class Event(SQLModel, table=True):
    """The current state of an event; its bodies, the first included, are EventRevision rows."""

    __tablename__ = "events"
    __table_args__ = (
        # Dedup (I8, I11): an eventId is stored once per business, forever.
        sa.UniqueConstraint("business_id", "event_id"),
        # The keyset orders of the events connection (Q2, Q3), with and without filters.
        sa.Index(
            "ix_events_business_id_timestamp_sequence", "business_id", "timestamp", "sequence"
        ),
        sa.Index(
            "ix_events_business_id_customer_id_timestamp_sequence",
            "business_id",
            "customer_id",
            "timestamp",
            "sequence",
        ),
        sa.Index(
            "ix_events_business_id_external_customer_id_timestamp_sequence",
            "business_id",
            "external_customer_id",
            "timestamp",
            "sequence",
        ),
        sa.Index(
            "ix_events_business_id_event_name_timestamp_sequence",
            "business_id",
            "event_name",
            "timestamp",
            "sequence",
        ),
        # A backfill's events, in listing order (EventFilter.backfillId, Backfill.events).
        sa.Index(
            "ix_events_backfill_id_timestamp_sequence", "backfill_id", "timestamp", "sequence"
        ),
    )

    # Insertion order: breaks timestamp ties so that the order of events is total (Q2).
    sequence: int | None = Field(
        default=None, sa_column=sa.Column(BigIntegerKey, primary_key=True, autoincrement=True)
    )
    id: str = Field(unique=True, max_length=40)
    business_id: str = Field(foreign_key="businesses.id", max_length=40)
    event_id: str = Field(max_length=255)
    customer_id: str | None = Field(default=None, foreign_key="customers.id", max_length=40)
    external_customer_id: str | None = Field(default=None, max_length=255)
    event_name: str = Field(max_length=255)
    timestamp: datetime = Field(sa_type=UTCDateTime)
    # `metadata` is taken by SQLModel itself, hence the attribute name.
    event_metadata: dict[str, Any] = Field(
        sa_column=sa.Column("metadata", JSONDocument, nullable=False)
    )
    ingested_at: datetime = Field(sa_type=UTCDateTime)
    # The number of the current revision; its body is the one copied into this row.
    revision: int = Field(default=1)
    deprecated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deprecation_reason: str | None = Field(default=None)
    # The backfill the event was sent into (SPEC §16), if any.
    backfill_id: str | None = Field(default=None, max_length=40)
    # When the event began to count: its ingestion, or its backfill's reflection. NULL
    # while its backfill is pending, or was reverted before it was reflected: such an
    # event is in no listing, usage or volume (B3). Deprecation is told by deprecated_at
    # on top; together they answer U8's "did it count at that moment".
    counted_from: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EventRevision(SQLModel, table=True):
    """An event body, append-only: revision 1 is the ingested one, each amendment adds one."""

    __tablename__ = "event_revisions"

    event_sequence: int = Field(
        sa_column=sa.Column(
            BigIntegerKey, sa.ForeignKey("events.sequence"), primary_key=True, autoincrement=False
        )
    )
    revision: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    event_name: str = Field(max_length=255)
    timestamp: datetime = Field(sa_type=UTCDateTime)
    customer_id: str | None = Field(default=None, max_length=40)
    external_customer_id: str | None = Field(default=None, max_length=255)
    revision_metadata: dict[str, Any] = Field(
        sa_column=sa.Column("metadata", JSONDocument, nullable=False)
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    reason: str | None = Field(default=None)


class EventCorrection(SQLModel, table=True):
    """One amendment or deprecation, by customer: what the rolling limits of C5 count."""

    __tablename__ = "event_corrections"
    __table_args__ = (
        # C5 counts a customer's corrections of one kind since a moment: one range scan.
        sa.Index(
            "ix_event_corrections_customer_id_kind_created_at", "customer_id", "kind", "created_at"
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIntegerKey, primary_key=True, autoincrement=True)
    )
    business_id: str = Field(foreign_key="businesses.id", max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    event_sequence: int = Field(
        sa_column=sa.Column(BigIntegerKey, sa.ForeignKey("events.sequence"), nullable=False)
    )
    # "amendment" or "deprecation"
    kind: str = Field(max_length=20)
    created_at: datetime = Field(sa_type=UTCDateTime)


class Meter(SQLModel, table=True):
    """An event name plus an aggregation and an optional filter over metadata (SPEC §5)."""

    __tablename__ = "meters"
    __table_args__ = (
        # Cursor paging of a business's meters, in id (= creation) order.
        sa.Index("ix_meters_business_id_id", "business_id", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    business_id: str = Field(foreign_key="businesses.id", max_length=40)
    name: str = Field(max_length=255)
    description: str | None = Field(default=None)
    event_name: str = Field(max_length=255)
    aggregation_type: str = Field(max_length=20)
    aggregation_key: str | None = Field(default=None, max_length=100)
    measurement_unit: str | None = Field(default=None, max_length=100)
    # The filter as db.filters.Filter.to_document() writes it; NULL when there is none.
    filter: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column("filter", JSONDocument, nullable=True)
    )
    # The metadata keys its rollups are kept by (a JSON list): groupBy over them is fast.
    dimensions: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(
            "dimensions", JSONDocument, nullable=False, server_default=sa.text("'[]'")
        ),
    )
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    # When the meter's rollups were built from the events stored then; NULL until they are
    # (meters made before rollups existed): such a meter is answered from the raw events.
    rollups_built_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# Rollup keys use '' for "no customer id" / "no externalCustomerId" (and for "every event
# name"), so that they can be part of a primary key. An event names one customer key or the
# other (I4), never neither: the meter rollup row with both '' is the business-wide one.
NO_CUSTOMER = ""
EVERY_EVENT_NAME = ""


class MeterRollup(SQLModel, table=True):
    """A meter's events of one UTC quarter-hour, pre-aggregated (mergeable partial state).

    Quarter-hours, because every zone offset in use is a multiple of 15 minutes: the
    buckets of any zone's hours, days, weeks and months are unions of whole quarter-hours.
    Each quarter has business-wide rows and rows per customer key that sent events in it,
    one per combination of values at the meter's dimensions. The columns are what merges
    exactly: counts and the exact sum add, minimum and maximum compare, and the latest
    number wins by (timestamp, sequence).
    """

    __tablename__ = "meter_rollups"
    # Rows are only ever reached by their key: on SQLite the key's B-tree holds them (no
    # rowid table beside it, half the pages to write per batch).
    __table_args__ = {"sqlite_with_rowid": False}

    meter_id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(primary_key=True, max_length=40)
    external_customer_id: str = Field(primary_key=True, max_length=255)
    # How many quarter-hours the row spans: 1, or 4 (a whole UTC hour, business-wide rows
    # only: a month of daily usage in a zone of whole-hour offsets reads 720 of them rather
    # than 2880 quarters).
    span: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True, autoincrement=False))
    # The first quarter-hour of the row, in whole quarters since 1970-01-01T00:00Z:
    # floor(epoch seconds / 900).
    quarter: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    # The JSON array of the events' values at the meter's dimensions, in their order (null
    # where an event lacks the key; "[]" for a meter without dimensions). The same values
    # may be written in more than one way (1 and 1.0); readers compare them as U6 does.
    group_values: str = Field(primary_key=True)
    business_id: str = Field(foreign_key="businesses.id", max_length=40)
    event_count: int = Field(sa_type=sa.BigInteger)
    # How many of the events hold a number at the meter's key, and those numbers' sum etc.
    numbers: int = Field(sa_type=sa.BigInteger)
    total: Decimal = Field(sa_type=ExactNumber)
    minimum: Decimal | None = Field(default=None, sa_type=ExactNumber)
    maximum: Decimal | None = Field(default=None, sa_type=ExactNumber)
    # LAST meters only: the latest number by (timestamp, sequence), and that moment.
    last_value: Decimal | None = Field(default=None, sa_type=ExactNumber)
    last_timestamp: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_sequence: int | None = Field(default=None, sa_type=sa.BigInteger)


class VolumeRollup(SQLModel, table=True):
    """How many events of a business fell in one UTC quarter-hour (eventVolume, V1).

    Two levels per quarter: the whole business (event name ''), and each event name.
    `basis` says which moment places the event in its quarter: "event" (its timestamp) or
    "ingestion" (ingestedAt). There is no level per customer: it would make every 1000-event
    batch of a thousand customers write thousands of rows; a customer's volume is counted
    from the raw events, through the index of its events by time.
    """

    __tablename__ = "volume_rollups"
    __table_args__ = {"sqlite_with_rowid": False}  # see MeterRollup

    business_id: str = Field(foreign_key="businesses.id", primary_key=True, max_length=40)
    basis: str = Field(primary_key=True, max_length=10)
    event_name: str = Field(primary_key=True, max_length=255)
    quarter: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    # 0: the counts ingestion merges into. Otherwise the sequence of a corrected event, and
    # its corrections' changes to the counts: rows of their own, so that a correction in
    # flight never holds up ingestion of the same quarter (a reader adds the parts up).
    part: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    event_count: int = Field(sa_type=sa.BigInteger)
    # Of event_count, how many are deprecated now.
    deprecated_count: int = Field(sa_type=sa.BigInteger)


class Backfill(SQLModel, table=True):
    """A timeframe and customer scope of history to load or replace (SPEC §16)."""

    __tablename__ = "backfills"
    __table_args__ = (
        # Cursor paging of a business's backfills, in id (= creation) order.
        sa.Index("ix_backfills_business_id_id", "business_id", "id"),
        # The closer's search for pending backfills whose closeTime has come (B4).
        sa.Index("ix_backfills_status_close_time", "status", "close_time"),
    )

    id: str = Field(primary_key=True, max_length=40)
    business_id: str = Field(foreign_key="businesses.id", max_length=40)
    # "pending", "reflected" or "reverted"
    status: str = Field(max_length=10)
    timeframe_start: datetime = Field(sa_type=UTCDateTime)
    timeframe_end: datetime = Field(sa_type=UTCDateTime)
    # The customer scope: one customer, by the reference it was given as (both NULL: the
    # whole business). A customerId is the customer's row; an externalCustomerId need not
    # name a customer yet, as at ingestion (I4).
    customer_id: str | None = Field(default=None, foreign_key="customers.id", max_length=40)
    external_customer_id: str | None = Field(default=None, max_length=255)
    replace_existing_events: bool
    # As db.filters.Filter.to_document() writes it; NULL: every event in scope is replaced.
    deprecation_filter: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column("deprecation_filter", JSONDocument, nullable=True)
    )
    close_time: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    reflected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reverted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class BackfillReplacement(SQLModel, table=True):
    """An event a backfill's close deprecated (B4); its revert restores it (B5).

    With the backfill's reflected_at and reverted_at, these rows are the whole history of
    deprecations undone: an event listed here was deprecated over [reflected_at,
    reverted_at) of its backfill, whatever events.deprecated_at says now (U8).
    """

    __tablename__ = "backfill_replacements"
    __table_args__ = (
        # U8: was this event replaced at some moment? One probe per event.
        sa.Index("ix_backfill_replacements_event_sequence", "event_sequence"),
    )

    backfill_id: str = Field(foreign_key="backfills.id", primary_key=True, max_length=40)
    event_sequence: int = Field(
        sa_column=sa.Column(
            BigIntegerKey, sa.ForeignKey("events.sequence"), primary_key=True, autoincrement=False
        )
    )
    business_id: str = Field(foreign_key="businesses.id", max_length=40)


businesses = Business.__table__  # type: ignore[attr-defined]
api_keys = ApiKey.__table__  # type: ignore[attr-defined]
customers = Customer.__table__  # type: ignore[attr-defined]
events = Event.__table__  # type: ignore[attr-defined]
event_revisions = EventRevision.__table__  # type: ignore[attr-defined]
event_corrections = EventCorrection.__table__  # type: ignore[attr-defined]
meters = Meter.__table__  # type: ignore[attr-defined]
meter_rollups = MeterRollup.__table__  # type: ignore[attr-defined]
volume_rollups = VolumeRollup.__table__  # type: ignore[attr-defined]
backfills = Backfill.__table__  # type: ignore[attr-defined]
backfill_replacements = BackfillReplacement.__table__  # type: ignore[attr-defined]

# Every table of the service, for migrations and tests that walk them all.
metadata: sa.MetaData = SQLModel.metadata
