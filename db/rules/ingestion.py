"""The ingestion rules of SPEC §2 as pure functions: values and settings in, violations out.

Nothing here does I/O. Rules that need stored facts (does this customer exist, is this
eventId deprecated) take those facts as arguments; the repository looks them up.
"""

import math
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from db.errors import UserErrorCode, Violation
from db.records import EventDraft
from db.rules.bounds import MAX_SERVER_ID_LENGTH, too_long
from db.rules.customers import NOT_A_CUSTOMER_ID, is_customer_id
from db.settings import Settings

MAX_EVENT_ID_LENGTH = 255
MAX_EVENT_NAME_LENGTH = 255
MAX_EXTERNAL_CUSTOMER_ID_LENGTH = 255
MAX_METADATA_KEY_LENGTH = 100
MAX_METADATA_STRING_LENGTH = 500
# Numbers beyond 64 bits cannot be compared exactly by SQLite's JSON functions, so the
# same filter could answer differently on the two databases; they are refused instead.
MIN_METADATA_INTEGER = -(2**63)
MAX_METADATA_INTEGER = 2**63 - 1

Path = tuple[str, ...]


def event_path(index: int, *rest: str) -> Path:
    return ("events", str(index), *rest)


def shown_event_id(event_id: object) -> str | None:
    """The eventId to report on an error: only a valid one, never a 5 MB string."""
    if isinstance(event_id, str) and 1 <= len(event_id) <= MAX_EVENT_ID_LENGTH:
        return event_id
    return None


def check_batch_size(count: int, settings: Settings) -> list[Violation]:
    """I1: 1 ≤ n ≤ MAX_BATCH_SIZE."""
    if count == 0:
        return [Violation(UserErrorCode.EMPTY_BATCH, "The batch holds no events.", ("events",))]
    if count > settings.max_batch_size:
        message = (
            f"The batch holds {count} events; at most {settings.max_batch_size} "
            "are accepted in one request."
        )
        return [Violation(UserErrorCode.BATCH_TOO_LARGE, message, ("events",))]
    return []


def check_event_id(event_id: str, path: Path) -> list[Violation]:
    """I2: 1–255 characters."""
    if 1 <= len(event_id) <= MAX_EVENT_ID_LENGTH:
        return []
    message = f"eventId must be 1 to {MAX_EVENT_ID_LENGTH} characters long, not {len(event_id)}."
    return [Violation(UserErrorCode.EVENT_ID_INVALID, message, path)]


def check_event_name(event_name: str, path: Path, event_id: str | None) -> list[Violation]:
    """I3: 1–255 characters."""
    if 1 <= len(event_name) <= MAX_EVENT_NAME_LENGTH:
        return []
    message = (
        f"eventName must be 1 to {MAX_EVENT_NAME_LENGTH} characters long, not {len(event_name)}."
    )
    return [Violation(UserErrorCode.EVENT_NAME_INVALID, message, path, event_id)]


def check_customer_reference(
    customer_id: str | None, external_customer_id: str | None, path: Path, event_id: str | None
) -> list[Violation]:
    """I4, the part without I/O: exactly one of customerId / externalCustomerId, non-empty.

    A reference sent as "" counts as given: `{customerId: "", externalCustomerId: "x"}`
    names two references, one of them empty, and is refused rather than guessed at.
    """
    given = [
        (name, value)
        for name, value in (
            ("customerId", customer_id),
            ("externalCustomerId", external_customer_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        message = (
            "Give exactly one non-empty customer reference: customerId or externalCustomerId."
            if not given
            else "Give customerId or externalCustomerId, not both."
        )
        return [Violation(UserErrorCode.CUSTOMER_REFERENCE_INVALID, message, path, event_id)]
    [(name, value)] = given
    if not value:
        message = f"{name} must not be empty."
        return [
            Violation(UserErrorCode.CUSTOMER_REFERENCE_INVALID, message, (*path, name), event_id)
        ]
    # A customerId longer than any id of ours names no customer: refused as a reference,
    # not looked up (check_customers_exist leaves it alone).
    return too_long(
        customer_id,
        MAX_SERVER_ID_LENGTH,
        (*path, "customerId"),
        UserErrorCode.CUSTOMER_REFERENCE_INVALID,
        event_id,
    ) + too_long(
        external_customer_id,
        MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
        (*path, "externalCustomerId"),
        UserErrorCode.CUSTOMER_REFERENCE_INVALID,
        event_id,
    )


def check_timestamp(
    timestamp: datetime, now: datetime, settings: Settings, path: Path, event_id: str | None
) -> list[Violation]:
    """I5: within [now - INGEST_PAST_WINDOW, now + INGEST_FUTURE_WINDOW]."""
    if timestamp < now - settings.ingest_past_window:
        message = (
            f"timestamp {timestamp.isoformat()} is older than the ingestion window of "
            f"{_seconds(settings.ingest_past_window)} seconds. To load older history, send "
            "it into a backfill: createBackfill, then ingestEvents with its backfillId."
        )
        return [Violation(UserErrorCode.TIMESTAMP_TOO_OLD, message, path, event_id)]
    if timestamp > now + settings.ingest_future_window:
        message = (
            f"timestamp {timestamp.isoformat()} is more than {settings.ingest_future_window} "
            "in the future."
        )
        return [Violation(UserErrorCode.TIMESTAMP_TOO_FAR_IN_FUTURE, message, path, event_id)]
    return []


def _seconds(duration: timedelta) -> str:
    seconds = duration.total_seconds()
    return str(int(seconds)) if seconds.is_integer() else str(seconds)


def check_metadata(
    metadata: Any, path: Path, event_id: str | None, settings: Settings
) -> list[Violation]:
    """I6: a flat JSON object of at most METADATA_MAX_KEYS strings, finite numbers, booleans."""
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        message = f"metadata must be a JSON object, not {_json_type_name(metadata)}."
        return [Violation(UserErrorCode.METADATA_INVALID, message, path, event_id)]
    violations: list[Violation] = []
    if len(metadata) > settings.metadata_max_keys:
        message = (
            f"metadata has {len(metadata)} keys; at most {settings.metadata_max_keys} are allowed."
        )
        violations.append(Violation(UserErrorCode.METADATA_TOO_MANY_KEYS, message, path, event_id))
    for key, value in metadata.items():
        # A 5 MB key would otherwise be echoed back in the error path.
        key_path = (
            *path,
            key if len(key) <= MAX_METADATA_KEY_LENGTH else key[:MAX_METADATA_KEY_LENGTH],
        )
        if not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH:
            message = (
                f"metadata keys must be 1 to {MAX_METADATA_KEY_LENGTH} characters long, "
                f"not {len(key)}."
            )
            violations.append(
                Violation(UserErrorCode.METADATA_KEY_INVALID, message, key_path, event_id)
            )
        violations.extend(_check_metadata_value(value, key_path, event_id))
    return violations


def _check_metadata_value(value: Any, path: Path, event_id: str | None) -> list[Violation]:
    if isinstance(value, str):
        if len(value) > MAX_METADATA_STRING_LENGTH:
            message = (
                f"metadata strings may be at most {MAX_METADATA_STRING_LENGTH} characters long, "
                f"not {len(value)}."
            )
            return [Violation(UserErrorCode.METADATA_VALUE_TOO_LONG, message, path, event_id)]
        return []
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        if MIN_METADATA_INTEGER <= value <= MAX_METADATA_INTEGER:
            return []
        message = "metadata integers must fit in 64 bits (between -2^63 and 2^63-1)."
        return [Violation(UserErrorCode.METADATA_VALUE_INVALID, message, path, event_id)]
    if isinstance(value, float):
        if math.isfinite(value):
            return []
        message = "metadata numbers must be finite; NaN and Infinity are not allowed."
        return [Violation(UserErrorCode.METADATA_VALUE_INVALID, message, path, event_id)]
    message = (
        "metadata values must be strings, finite numbers or booleans, "
        f"not {_json_type_name(value)}."
    )
    return [Violation(UserErrorCode.METADATA_VALUE_INVALID, message, path, event_id)]


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def check_duplicates_in_batch(event_ids: Sequence[str]) -> list[Violation]:
    """I7: every repeated occurrence of an eventId in one request is an error."""
    seen: set[str] = set()
    violations: list[Violation] = []
    for index, event_id in enumerate(event_ids):
        if event_id in seen:
            message = "This eventId appears more than once in the request."
            violations.append(
                Violation(
                    UserErrorCode.DUPLICATE_EVENT_ID_IN_BATCH,
                    message,
                    event_path(index, "eventId"),
                    shown_event_id(event_id),
                )
            )
        seen.add(event_id)
    return violations


def check_event_draft(
    index: int, draft: EventDraft, now: datetime, settings: Settings, *, check_window: bool = True
) -> list[Violation]:
    """I2–I6 for one event of a batch: every rule that needs no stored data. Events sent
    into a backfill are checked against its timeframe instead of the window of I5 (B2)."""
    event_id = shown_event_id(draft.event_id)
    violations = check_event_id(draft.event_id, event_path(index, "eventId"))
    violations += check_event_name(draft.event_name, event_path(index, "eventName"), event_id)
    violations += check_customer_reference(
        draft.customer_id, draft.external_customer_id, event_path(index), event_id
    )
    if draft.timestamp is not None and check_window:
        violations += check_timestamp(
            draft.timestamp, now, settings, event_path(index, "timestamp"), event_id
        )
    violations += check_metadata(draft.metadata, event_path(index, "metadata"), event_id, settings)
    return violations


def check_customers_exist(
    drafts: Sequence[EventDraft], existing_customer_ids: Collection[str]
) -> list[Violation]:
    """I4: a customerId must name a customer of the caller's business."""
    return [
        Violation(
            UserErrorCode.CUSTOMER_NOT_FOUND,
            "No customer with this id exists in your business."
            if is_customer_id(draft.customer_id)
            else NOT_A_CUSTOMER_ID,
            event_path(index, "customerId"),
            shown_event_id(draft.event_id),
        )
        for index, draft in enumerate(drafts)
        if draft.customer_id
        and len(draft.customer_id) <= MAX_SERVER_ID_LENGTH
        and draft.customer_id not in existing_customer_ids
    ]


def check_not_deprecated(
    event_ids: Sequence[str], deprecated_event_ids: Collection[str]
) -> list[Violation]:
    """I9: re-sending the eventId of a deprecated event is an error."""
    return [
        Violation(
            UserErrorCode.EVENT_DEPRECATED,
            "An event with this eventId was deprecated; its eventId cannot be sent again.",
            event_path(index, "eventId"),
            event_id,
        )
        for index, event_id in enumerate(event_ids)
        if event_id in deprecated_event_ids
    ]


def sort_by_event_index(violations: Iterable[Violation]) -> list[Violation]:
    """Errors of event 0 first, then event 1, …; batch-wide errors before them all."""

    def key(violation: Violation) -> int:
        field = violation.field
        if len(field) >= 2 and field[0] == "events" and field[1].isdigit():
            return int(field[1])
        return -1

    return sorted(violations, key=key)


def utc_now() -> datetime:
    return datetime.now(UTC)
