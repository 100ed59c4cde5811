"""What `events(filter:, orderBy:)` asks for (SPEC §4, Q4), as plain values."""

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any


class EventOrder(Enum):
    TIMESTAMP_DESC = "TIMESTAMP_DESC"
    TIMESTAMP_ASC = "TIMESTAMP_ASC"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Every condition is optional; given ones are combined with AND."""

    customer_id: str | None = None
    external_customer_id: str | None = None
    event_name: str | None = None
    event_ids: tuple[str, ...] | None = None
    meter_id: str | None = None
    # An ad-hoc filter in the meter filter language, as the client sent it.
    metadata: Any = None
    start: datetime | None = None
    end: datetime | None = None
    include_deprecated: bool = False
    # The events of this backfill, whatever its status (B3); else only events that count
    # or counted (their backfill, if any, reflected).
    backfill_id: str | None = None
    # The events this backfill's close deprecated (B6).
    replaced_by_backfill_id: str | None = None
