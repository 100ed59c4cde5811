"""The correction rules of SPEC §3 (C1–C5) as pure functions over the stored event."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.errors import UserErrorCode, Violation, shown
from db.json_text import dump_json
from db.records import CustomerRecord, EventRecord
from db.rules.bounds import MAX_SERVER_ID_LENGTH, too_long
from db.rules.ingestion import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_NAME_LENGTH,
    MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
    check_event_name,
    check_metadata,
    shown_event_id,
)
from db.settings import Settings


@dataclass(frozen=True, slots=True)
class Amendment:
    """The body an amendEvent request proposes (C1): a full replacement."""

    event_id: str
    event_name: str
    metadata: Any
    timestamp: datetime | None = None
    customer_id: str | None = None
    external_customer_id: str | None = None
    reason: str | None = None


def check_reason(reason: str | None, event_id: str | None, settings: Settings) -> list[Violation]:
    """C1, C2: the optional reason of an amendment or deprecation, an audit note kept on
    every revision, has a length bound (USAGE_EVENTS_MAX_REASON_LENGTH): without one,
    each correction could store, and every listing repeat, as much as a request carries."""
    return too_long(
        reason, settings.max_reason_length, ("reason",), UserErrorCode.REASON_TOO_LONG, event_id
    )


def check_deprecation_bounds(
    event_id: str, reason: str | None, settings: Settings
) -> list[Violation]:
    """C2: eventId and reason within their bounds, checked before any row is read."""
    shown_id = shown_event_id(event_id)
    return too_long(
        event_id, MAX_EVENT_ID_LENGTH, ("eventId",), UserErrorCode.EVENT_ID_INVALID
    ) + check_reason(reason, shown_id, settings)


def check_amendment_bounds(amendment: Amendment, settings: Settings) -> list[Violation]:
    """C1: every string of the amendment within its bound, checked before any row is read;
    check_amendment holds the body to the rest of I3 and I6 once the event is found."""
    event_id = shown_event_id(amendment.event_id)
    references = UserErrorCode.CUSTOMER_REFERENCE_INVALID
    return [
        *check_deprecation_bounds(amendment.event_id, amendment.reason, settings),
        *too_long(
            amendment.event_name,
            MAX_EVENT_NAME_LENGTH,
            ("eventName",),
            UserErrorCode.EVENT_NAME_INVALID,
            event_id,
        ),
        *too_long(
            amendment.customer_id, MAX_SERVER_ID_LENGTH, ("customerId",), references, event_id
        ),
        *too_long(
            amendment.external_customer_id,
            MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
            ("externalCustomerId",),
            references,
            event_id,
        ),
    ]


def event_not_found(event_id: str) -> Violation:
    """C3: unknown eventId, or another business's."""
    return Violation(
        UserErrorCode.EVENT_NOT_FOUND,
        "Your business has no event with this eventId.",
        ("eventId",),
        shown_event_id(event_id),
    )


def check_event_amendable(event: EventRecord) -> list[Violation]:
    """C3: a deprecated event cannot be amended."""
    if event.deprecated:
        return [
            Violation(
                UserErrorCode.EVENT_DEPRECATED,
                "The event is deprecated and can no longer be amended.",
                ("eventId",),
                event.event_id,
            )
        ]
    return []


def customer_missing(event: EventRecord) -> Violation:
    """C4: the event's external customer id is not (yet) any customer's externalId."""
    return Violation(
        UserErrorCode.CUSTOMER_NOT_FOUND,
        f"No customer has the externalId {shown(event.external_customer_id or '')!r} this "
        "event was sent with; create that customer before correcting the event.",
        ("eventId",),
        event.event_id,
    )


def check_amendment(
    amendment: Amendment, event: EventRecord, customer: CustomerRecord, settings: Settings
) -> list[Violation]:
    """C1: the new body is valid (I3, I6) and its timestamp and customer are the stored ones."""
    event_id = event.event_id
    violations = check_event_name(amendment.event_name, ("eventName",), event_id)
    if amendment.metadata is None:
        violations.append(
            Violation(
                UserErrorCode.METADATA_INVALID,
                "metadata is required: an amendment replaces the whole body; send {} for none.",
                ("metadata",),
                event_id,
            )
        )
    else:
        violations += check_metadata(amendment.metadata, ("metadata",), event_id, settings)
    if amendment.timestamp is not None and amendment.timestamp != event.timestamp:
        violations.append(
            Violation(
                UserErrorCode.TIMESTAMP_MISMATCH,
                f"The event's timestamp is {event.timestamp.isoformat()}; an amendment cannot "
                "change it.",
                ("timestamp",),
                event_id,
            )
        )
    violations += _check_same_customer(amendment, customer, event_id)
    return violations


def _check_same_customer(
    amendment: Amendment, customer: CustomerRecord, event_id: str
) -> list[Violation]:
    # Either form of reference may name the event's customer: the rule is about which
    # customer, not about how the event happened to be sent.
    mismatches = []
    if amendment.customer_id is not None and amendment.customer_id != customer.id:
        mismatches.append("customerId")
    if (
        amendment.external_customer_id is not None
        and amendment.external_customer_id != customer.external_id
    ):
        mismatches.append("externalCustomerId")
    return [
        Violation(
            UserErrorCode.CUSTOMER_MISMATCH,
            "The event belongs to another customer; an amendment cannot move it.",
            (name,),
            event_id,
        )
        for name in mismatches
    ]


def is_same_body(amendment: Amendment, event: EventRecord) -> bool:
    """C1: an amendment identical to the current body is a no-op.

    Compared as the JSON text the database stores, because in Python `1 == 1.0 == True`
    while in the stored document they are three different values, and because the store
    writes `-0.0` as `0.0`.
    """
    return amendment.event_name == event.event_name and dump_json(
        amendment.metadata, sort_keys=True
    ) == dump_json(event.metadata, sort_keys=True)


def check_correction_limit(
    corrections_in_window: int, kind: str, settings: Settings, event_id: str
) -> list[Violation]:
    """C5: at most CORRECTION_LIMIT amendments, and as many deprecations, per customer."""
    limit = settings.correction_limit
    if limit == 0 or corrections_in_window < limit:
        return []
    return [
        Violation(
            UserErrorCode.CORRECTION_LIMIT_EXCEEDED,
            f"This customer's events have had {corrections_in_window} {kind}s in the last "
            f"{settings.correction_window}; at most {limit} are allowed.",
            ("eventId",),
            event_id,
        )
    ]
