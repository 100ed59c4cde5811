"""Domain errors: every rule violation carries a code from UserErrorCode (SPEC §8)."""

from dataclasses import dataclass
from enum import Enum


class UserErrorCode(Enum):
    EMPTY_BATCH = "EMPTY_BATCH"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    EVENT_ID_INVALID = "EVENT_ID_INVALID"
    EVENT_NAME_INVALID = "EVENT_NAME_INVALID"
    CUSTOMER_REFERENCE_INVALID = "CUSTOMER_REFERENCE_INVALID"
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    TIMESTAMP_TOO_OLD = "TIMESTAMP_TOO_OLD"
    TIMESTAMP_TOO_FAR_IN_FUTURE = "TIMESTAMP_TOO_FAR_IN_FUTURE"
    METADATA_INVALID = "METADATA_INVALID"
    METADATA_TOO_MANY_KEYS = "METADATA_TOO_MANY_KEYS"
    METADATA_KEY_INVALID = "METADATA_KEY_INVALID"
    METADATA_VALUE_TOO_LONG = "METADATA_VALUE_TOO_LONG"
    METADATA_VALUE_INVALID = "METADATA_VALUE_INVALID"
    DUPLICATE_EVENT_ID_IN_BATCH = "DUPLICATE_EVENT_ID_IN_BATCH"
    EVENT_DEPRECATED = "EVENT_DEPRECATED"
    EVENT_NOT_FOUND = "EVENT_NOT_FOUND"
    TIMESTAMP_MISMATCH = "TIMESTAMP_MISMATCH"
    CUSTOMER_MISMATCH = "CUSTOMER_MISMATCH"
    CORRECTION_LIMIT_EXCEEDED = "CORRECTION_LIMIT_EXCEEDED"
    REASON_TOO_LONG = "REASON_TOO_LONG"
    METER_NOT_FOUND = "METER_NOT_FOUND"
    EVENT_NAME_MISMATCH = "EVENT_NAME_MISMATCH"
    FILTER_INVALID = "FILTER_INVALID"
    AGGREGATION_INVALID = "AGGREGATION_INVALID"
    EXTERNAL_ID_TAKEN = "EXTERNAL_ID_TAKEN"
    INVALID_CURSOR = "INVALID_CURSOR"
    PAGE_SIZE_INVALID = "PAGE_SIZE_INVALID"
    INVALID_INPUT = "INVALID_INPUT"
    TIME_RANGE_INVALID = "TIME_RANGE_INVALID"
    TIME_ZONE_INVALID = "TIME_ZONE_INVALID"
    GROUP_BY_INVALID = "GROUP_BY_INVALID"
    USAGE_RESULT_TOO_LARGE = "USAGE_RESULT_TOO_LARGE"
    BACKFILL_NOT_FOUND = "BACKFILL_NOT_FOUND"
    BACKFILL_NOT_PENDING = "BACKFILL_NOT_PENDING"
    BACKFILL_CONFLICT = "BACKFILL_CONFLICT"
    TIMESTAMP_OUTSIDE_BACKFILL = "TIMESTAMP_OUTSIDE_BACKFILL"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: what, where in the input (a path of strings), and for which event."""

    code: UserErrorCode
    message: str
    field: tuple[str, ...]
    event_id: str | None = None


# How much of a client's text a message or a UserError may repeat.
SHOWN_LENGTH = 100


def shown(text: str, limit: int = SHOWN_LENGTH) -> str:
    """Client text as an error may repeat it: never more than `limit` characters and "…"."""
    return text if len(text) <= limit else text[:limit] + "…"


class RuleViolations(Exception):
    """Raised inside a unit of work so that it rolls back; carries every violation found."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__(f"{len(violations)} rule violation(s)")
        self.violations = violations


class BadUserInput(Exception):
    """A bad query argument (cursor, page size, unknown meter…): a top-level GraphQL error."""

    def __init__(
        self, code: UserErrorCode, message: str, field: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Where in the arguments the problem is, e.g. ("filter", "metadata", "clauses", "0").
        self.field = field
