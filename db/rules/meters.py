"""Rules for createMeter (SPEC §5, M1–M3)."""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from db.errors import UserErrorCode, Violation, shown
from db.filters import MAX_FILTER_KEY_LENGTH, Filter, parse_filter
from db.rules.ingestion import check_event_name

MAX_METER_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 2000
MAX_AGGREGATION_KEY_LENGTH = 100
MAX_MEASUREMENT_UNIT_LENGTH = 100
# groupBy keys of a usage query, and the dimensions a meter's rollups are kept by.
MAX_GROUPING_KEYS = 3


class AggregationType(Enum):
    COUNT = "COUNT"
    SUM = "SUM"
    MAX = "MAX"
    MIN = "MIN"
    AVG = "AVG"
    LAST = "LAST"
    UNIQUE_COUNT = "UNIQUE_COUNT"


@dataclass(frozen=True, slots=True)
class MeterDraft:
    name: str
    event_name: str
    aggregation_type: AggregationType
    aggregation_key: str | None = None
    description: str | None = None
    measurement_unit: str | None = None
    # As the client sent it: {"conjunction", "clauses", "groups"}, or None for no filter.
    filter: Any = None
    # Metadata keys by which usage is often grouped: meterUsage's groupBy over any of them
    # is answered from the rollups, which are kept per combination of their values.
    dimensions: tuple[str, ...] = ()


def check_new_meter(draft: MeterDraft) -> tuple[Filter | None, list[Violation]]:
    """The meter's parsed filter and every violation of M1–M3 in the draft."""
    violations: list[Violation] = []
    if not 1 <= len(draft.name) <= MAX_METER_NAME_LENGTH:
        violations.append(
            Violation(
                UserErrorCode.INVALID_INPUT,
                f"name must be 1 to {MAX_METER_NAME_LENGTH} characters long.",
                ("name",),
            )
        )
    if draft.description is not None and len(draft.description) > MAX_DESCRIPTION_LENGTH:
        violations.append(
            Violation(
                UserErrorCode.INVALID_INPUT,
                f"description must be at most {MAX_DESCRIPTION_LENGTH} characters long.",
                ("description",),
            )
        )
    if draft.measurement_unit is not None and not (
        1 <= len(draft.measurement_unit) <= MAX_MEASUREMENT_UNIT_LENGTH
    ):
        violations.append(
            Violation(
                UserErrorCode.INVALID_INPUT,
                f"measurementUnit must be 1 to {MAX_MEASUREMENT_UNIT_LENGTH} characters long.",
                ("measurementUnit",),
            )
        )
    violations += check_event_name(draft.event_name, ("eventName",), None)
    violations += _check_aggregation(draft)
    violations += [
        Violation(UserErrorCode.INVALID_INPUT, message, path)
        for path, message in grouping_key_problems(draft.dimensions, "dimensions")
    ]
    meter_filter: Filter | None = None
    if draft.filter is not None:
        meter_filter, filter_violations = parse_filter(draft.filter, ("filter",))
        violations += filter_violations
    return meter_filter, violations


def _check_aggregation(draft: MeterDraft) -> list[Violation]:
    key = draft.aggregation_key
    path = ("aggregation", "key")
    if draft.aggregation_type is AggregationType.COUNT:
        if key is not None and not 1 <= len(key) <= MAX_AGGREGATION_KEY_LENGTH:
            message = f"aggregation.key must be 1 to {MAX_AGGREGATION_KEY_LENGTH} characters."
            return [Violation(UserErrorCode.AGGREGATION_INVALID, message, path)]
        return []
    if key is None or not 1 <= len(key) <= MAX_AGGREGATION_KEY_LENGTH:
        message = (
            f"A {draft.aggregation_type.value} aggregation needs key: the metadata key it "
            f"aggregates, 1 to {MAX_AGGREGATION_KEY_LENGTH} characters."
        )
        return [Violation(UserErrorCode.AGGREGATION_INVALID, message, path)]
    return []


def grouping_key_problems(keys: Sequence[str], field: str) -> list[tuple[tuple[str, ...], str]]:
    """What is wrong with a list of metadata keys to group by (groupBy, dimensions): the
    field path and message of each problem, none if the list is fine."""
    if len(keys) > MAX_GROUPING_KEYS:
        return [
            (
                (field,),
                f"{field} takes at most {MAX_GROUPING_KEYS} metadata keys, not {len(keys)}.",
            )
        ]
    problems: list[tuple[tuple[str, ...], str]] = []
    seen: set[str] = set()
    for index, key in enumerate(keys):
        path = (field, str(index))
        if not 1 <= len(key) <= MAX_FILTER_KEY_LENGTH or "\x00" in key or not _encodable(key):
            problems.append(
                (
                    path,
                    f"A {field} key is a metadata key of 1 to {MAX_FILTER_KEY_LENGTH} "
                    "characters (no NUL, no unpaired surrogate).",
                )
            )
        elif key in seen:
            problems.append((path, f"{field} names {shown(key)!r} twice."))
        seen.add(key)
    return problems


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
