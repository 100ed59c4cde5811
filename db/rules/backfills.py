"""The backfill rules of SPEC §16 as pure functions: values and settings in, violations out.

Like db.rules.ingestion, nothing here does I/O: the repository looks up the stored facts
(the customer a scope names, other pending backfills) and hands them in.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from db.errors import UserErrorCode, Violation
from db.filters import Filter, parse_filter
from db.records import BackfillRecord, EventDraft
from db.rules.bounds import MAX_SERVER_ID_LENGTH, too_long
from db.rules.ingestion import (
    MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
    event_path,
    shown_event_id,
)
from db.settings import Settings

# The earliest moment history may be loaded for. Rollups number UTC quarter-hours from the
# Unix epoch with the databases' integer division, which is the floor only from there on;
# usage events from before 1970 are not a case worth a slower formula.
EARLIEST_HISTORY = datetime(1970, 1, 1, tzinfo=UTC)


class BackfillStatus(Enum):
    PENDING = "pending"
    REFLECTED = "reflected"
    REVERTED = "reverted"


@dataclass(frozen=True, slots=True)
class BackfillDraft:
    """createBackfill's input, as the client sent it (types already checked)."""

    timeframe_start: datetime
    timeframe_end: datetime
    replace_existing_events: bool
    customer_id: str | None = None
    external_customer_id: str | None = None
    deprecation_filter: Any = None
    close_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class CustomerScope:
    """Whose events a backfill holds and replaces: one customer, or (both None) every one.

    A customer is known by its id and by its externalId (Q4); an externalCustomerId no
    customer has yet is a scope of its own, as at ingestion (I4).
    """

    customer_id: str | None
    external_id: str | None

    @property
    def whole_business(self) -> bool:
        return self.customer_id is None and self.external_id is None

    def holds(self, customer_id: str | None, external_customer_id: str | None) -> bool:
        """Whether an event sent with these references is in the scope."""
        if self.whole_business:
            return True
        if customer_id is not None:
            return customer_id == self.customer_id
        return external_customer_id is not None and external_customer_id == self.external_id


def check_backfill_draft(
    draft: BackfillDraft, now: datetime, settings: Settings
) -> tuple[Filter | None, list[Violation]]:
    """B1, the part without stored facts: the parsed deprecation filter and every violation."""
    violations: list[Violation] = []
    start, end = draft.timeframe_start, draft.timeframe_end
    if not start < end:
        violations.append(
            Violation(
                UserErrorCode.TIME_RANGE_INVALID,
                "timeframeStart must be earlier than timeframeEnd (the start is inclusive, "
                "the end exclusive).",
                ("timeframeEnd",),
            )
        )
    elif end - start > settings.backfill_max_span:
        violations.append(
            Violation(
                UserErrorCode.TIME_RANGE_INVALID,
                f"A backfill's timeframe may span at most {_duration(settings.backfill_max_span)}"
                f", not {_duration(end - start)}; split the history into several backfills.",
                ("timeframeEnd",),
            )
        )
    if start < EARLIEST_HISTORY:
        violations.append(
            Violation(
                UserErrorCode.TIME_RANGE_INVALID,
                "timeframeStart must not be before 1970-01-01T00:00:00Z.",
                ("timeframeStart",),
            )
        )
    if end > now + settings.ingest_future_window:
        violations.append(
            Violation(
                UserErrorCode.TIME_RANGE_INVALID,
                "timeframeEnd is in the future (beyond the ingestion window of "
                f"{_duration(settings.ingest_future_window)}): a backfill loads history.",
                ("timeframeEnd",),
            )
        )
    if draft.close_time is not None and draft.close_time <= now:
        violations.append(
            Violation(
                UserErrorCode.TIME_RANGE_INVALID,
                "closeTime must be in the future; to reflect a backfill now, call closeBackfill.",
                ("closeTime",),
            )
        )
    violations += _check_scope_reference(draft)
    deprecation_filter: Filter | None = None
    if draft.deprecation_filter is not None:
        if not draft.replace_existing_events:
            violations.append(
                Violation(
                    UserErrorCode.FILTER_INVALID,
                    "A deprecationFilter says which existing events a backfill replaces; it "
                    "needs replaceExistingEvents: true.",
                    ("deprecationFilter",),
                )
            )
        else:
            deprecation_filter, filter_violations = parse_filter(
                draft.deprecation_filter, ("deprecationFilter",)
            )
            violations += filter_violations
    return deprecation_filter, violations


def _check_scope_reference(draft: BackfillDraft) -> list[Violation]:
    """customerId, externalCustomerId, or neither (every customer); never both, nor ""."""
    if draft.customer_id is not None and draft.external_customer_id is not None:
        return [
            Violation(
                UserErrorCode.CUSTOMER_REFERENCE_INVALID,
                "Give customerId or externalCustomerId, not both (neither: every customer).",
                ("customerId",),
            )
        ]
    for name, value in (
        ("customerId", draft.customer_id),
        ("externalCustomerId", draft.external_customer_id),
    ):
        if value is not None and not value:
            return [
                Violation(
                    UserErrorCode.CUSTOMER_REFERENCE_INVALID, f"{name} must not be empty.", (name,)
                )
            ]
    return too_long(
        draft.customer_id,
        MAX_SERVER_ID_LENGTH,
        ("customerId",),
        UserErrorCode.CUSTOMER_REFERENCE_INVALID,
    ) + too_long(
        draft.external_customer_id,
        MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
        ("externalCustomerId",),
        UserErrorCode.CUSTOMER_REFERENCE_INVALID,
    )


def check_backfill_id(backfill_id: str, path: tuple[str, ...]) -> list[Violation]:
    """An id longer than any backfill's is refused before it is looked up."""
    return too_long(backfill_id, MAX_SERVER_ID_LENGTH, path, UserErrorCode.INVALID_INPUT)


def backfill_conflict(other_id: str) -> Violation:
    """B1: no two PENDING backfills overlap in both timeframe and customer scope."""
    return Violation(
        UserErrorCode.BACKFILL_CONFLICT,
        f"Pending backfill {other_id} covers part of this timeframe and customer scope; close "
        "or revert it first.",
        ("timeframeStart",),
    )


def replaced_since(later_id: str) -> Violation:
    """B5: reverts undo closes in the order they happened (see BackfillRepository.revert)."""
    return Violation(
        UserErrorCode.BACKFILL_CONFLICT,
        f"Backfill {later_id} has since replaced events of this one; revert it first, or "
        "both versions of the history would count.",
        ("id",),
    )


def check_pending(backfill: BackfillRecord | None, path: tuple[str, ...]) -> list[Violation]:
    """B2: events go only into a PENDING backfill of the caller's business."""
    if backfill is None:
        return [backfill_not_found(path)]
    if backfill.status != BackfillStatus.PENDING.value:
        return [
            Violation(
                UserErrorCode.BACKFILL_NOT_PENDING,
                f"Backfill {backfill.id} is {backfill.status.upper()}: it takes no more "
                "events. Create a new backfill for more history.",
                path,
            )
        ]
    return []


def backfill_not_found(path: tuple[str, ...]) -> Violation:
    return Violation(
        UserErrorCode.BACKFILL_NOT_FOUND, "Your business has no backfill with this id.", path
    )


def check_backfill_event(
    index: int,
    draft: EventDraft,
    timestamp: datetime,
    backfill: BackfillRecord,
    scope: CustomerScope,
) -> list[Violation]:
    """B2: each event's timestamp lies in the timeframe, and its customer in the scope."""
    event_id = shown_event_id(draft.event_id)
    violations = []
    if not backfill.timeframe_start <= timestamp < backfill.timeframe_end:
        violations.append(
            Violation(
                UserErrorCode.TIMESTAMP_OUTSIDE_BACKFILL,
                f"timestamp {timestamp.isoformat()} is outside the backfill's timeframe "
                f"[{backfill.timeframe_start.isoformat()}, {backfill.timeframe_end.isoformat()}).",
                event_path(index, "timestamp"),
                event_id,
            )
        )
    if (draft.customer_id or draft.external_customer_id) and not scope.holds(
        draft.customer_id, draft.external_customer_id
    ):
        field = "customerId" if draft.customer_id is not None else "externalCustomerId"
        violations.append(
            Violation(
                UserErrorCode.CUSTOMER_MISMATCH,
                "This event's customer is not the backfill's "
                f"({backfill.customer_id or backfill.external_customer_id}).",
                event_path(index, field),
                event_id,
            )
        )
    return violations


def _duration(duration: Any) -> str:
    seconds = int(duration.total_seconds())
    if seconds % 86_400 == 0:
        return f"{seconds // 86_400} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"
