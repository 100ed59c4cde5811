"""Plain values that repositories return: read inside the session, safe to use after it."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class BusinessRecord:
    id: str
    name: str
    created_at: datetime
    # The key of the business's cursors: a secret, kept out of reprs and so out of logs.
    cursor_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    business_id: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: str
    business_id: str
    external_id: str | None
    name: str | None
    email: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    # Fields in the order of the events table's columns: rows are read by position
    # (db.repositories.events.event_record checks it at import).
    sequence: int
    id: str
    business_id: str
    event_id: str
    customer_id: str | None
    external_customer_id: str | None
    event_name: str
    timestamp: datetime
    metadata: dict[str, Any]
    ingested_at: datetime
    revision: int
    deprecated_at: datetime | None
    deprecation_reason: str | None
    backfill_id: str | None = None
    # When the event began to count; None while its backfill is not reflected (SPEC §16).
    counted_from: datetime | None = None

    @property
    def deprecated(self) -> bool:
        return self.deprecated_at is not None

    @property
    def counted(self) -> bool:
        """Counted now: in listings, usage and volume (U1, V1, B3)."""
        return self.counted_from is not None and self.deprecated_at is None


@dataclass(frozen=True, slots=True)
class EventRevisionRecord:
    event_sequence: int
    revision: int
    event_name: str
    timestamp: datetime
    customer_id: str | None
    external_customer_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class EventDraft:
    """One event of an ingest request, as the client sent it (types already checked)."""

    event_id: str
    event_name: str
    customer_id: str | None = None
    external_customer_id: str | None = None
    timestamp: datetime | None = None
    metadata: Any = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    ingested: list[str]
    duplicates: list[str]


@dataclass(frozen=True, slots=True)
class MeterRecord:
    id: str
    business_id: str
    name: str
    description: str | None
    event_name: str
    aggregation_type: str
    aggregation_key: str | None
    measurement_unit: str | None
    filter: dict[str, Any] | None
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # None for a meter made before rollups existed, until they are built (db.rollups).
    rollups_built_at: datetime | None = None
    dimensions: tuple[str, ...] = ()

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


@dataclass(frozen=True, slots=True)
class BackfillRecord:
    id: str
    business_id: str
    status: str
    timeframe_start: datetime
    timeframe_end: datetime
    customer_id: str | None
    external_customer_id: str | None
    replace_existing_events: bool
    deprecation_filter: dict[str, Any] | None
    close_time: datetime
    created_at: datetime
    reflected_at: datetime | None
    reverted_at: datetime | None
