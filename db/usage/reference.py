"""THE reference aggregator of meterUsage (U9) and eventVolume: plain Python over histories.

Pure, no I/O, written for clarity rather than speed: it defines what every source of
usage (the SQL of each database, the rollups) must answer, and a property test holds
them to it. Each decision the spec leaves open is stated where it is made.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from db.rules.meters import AggregationType
from db.usage.buckets import bucket_index
from db.usage.decimals import add, average, number_of
from db.usage.plan import UsagePlan, VolumePlan
from db.usage.query import (
    EventVolume,
    GroupValue,
    MeterUsage,
    SeriesKey,
    UsageBucket,
    UsageSeries,
    VolumeBasis,
    VolumeBucket,
    VolumeQuery,
    group_key,
    group_values,
    series_order,
)


@dataclass(frozen=True, slots=True)
class Revision:
    revision: int
    event_name: str
    metadata: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventHistory:
    """An event as stored: its fixed fields, its bodies oldest first, its deprecation, and
    when it began to count (its ingestion, or its backfill's reflection; None while its
    backfill is not reflected)."""

    sequence: int
    customer_id: str | None
    external_customer_id: str | None
    timestamp: datetime
    ingested_at: datetime
    deprecated_at: datetime | None
    revisions: Sequence[Revision]
    counted_from: datetime | None
    # [reflected, reverted) of each reverted backfill whose close had replaced the event:
    # deprecations since undone (B5).
    replaced: Sequence[tuple[datetime, datetime]] = ()


@dataclass(frozen=True, slots=True)
class CustomerState:
    id: str
    external_id: str | None
    created_at: datetime


def visible_body(event: EventHistory, as_of: datetime | None) -> Revision | None:
    """The body an event counts with at `as_of` (now when None), or None if it is not counted.

    U1/U8, the one place this is decided (its SQL twin: UsageRepository's visibility
    conditions). An event counts from its ingestion — an event of a backfill from the
    backfill's reflection (B3, B4) — until it is deprecated, with its latest revision made
    by then; while a backfill's close had it replaced, it did not count, even if the
    backfill's revert restored it later (B5).
    """
    if event.counted_from is None:
        return None
    if as_of is None:
        return None if event.deprecated_at is not None else event.revisions[-1]
    if event.counted_from > as_of:
        return None
    if event.deprecated_at is not None and event.deprecated_at <= as_of:
        return None
    if any(start <= as_of < end for start, end in event.replaced):
        return None
    made = [revision for revision in event.revisions if revision.created_at <= as_of]
    return made[-1] if made else None


def owner_of(
    event: EventHistory, customers: Iterable[CustomerState], as_of: datetime | None
) -> tuple[str | None, str | None]:
    """(customer id, externalCustomerId of no customer) of the event's series (U6).

    An event sent with an externalCustomerId belongs to the customer with that externalId
    (I4) — under asOf only to a customer that existed then, since the service would not
    have known the customer before: until then the event is a series of its own.
    """
    if event.customer_id is not None:
        return event.customer_id, None
    for customer in customers:
        if customer.external_id == event.external_customer_id and (
            as_of is None or customer.created_at <= as_of
        ):
            return customer.id, None
    return None, event.external_customer_id


def in_customer_scope(event: EventHistory, plan: UsagePlan) -> bool:
    """U1: customerIds match by id and by the customer's externalId (Q4); given both
    customerIds and externalCustomerIds, the union. This asks who sent the event, whatever
    asOf says about when its customer was created."""
    if not plan.narrowed_to_customers:
        return True
    return (event.customer_id is not None and event.customer_id in (plan.customer_ids or ())) or (
        event.external_customer_id is not None
        and event.external_customer_id in (plan.external_customer_ids or ())
    )


@dataclass(frozen=True, slots=True)
class Counted:
    event: EventHistory
    metadata: Mapping[str, Any]


def usage(
    plan: UsagePlan, events: Iterable[EventHistory], customers: Sequence[CustomerState]
) -> MeterUsage:
    """The answer to `plan` over these events and customers (of one business)."""
    start, end = plan.edges[0], plan.edges[-1]
    counted: list[tuple[SeriesKey, int, Counted]] = []
    for event in events:
        body = visible_body(event, plan.as_of)
        if body is None or body.event_name != plan.meter.event_name:
            continue
        if not all(each.matches(body.metadata) for each in plan.filters):
            continue
        if not start <= event.timestamp < end or not in_customer_scope(event, plan):
            continue
        customer_id, external_customer_id = (
            owner_of(event, customers, plan.as_of) if plan.group_by_customer else (None, None)
        )
        values = group_key(body.metadata.get(key) for key in plan.group_by)
        key: SeriesKey = (customer_id, external_customer_id, values)
        counted.append(
            (key, bucket_index(plan.edges, event.timestamp), Counted(event, body.metadata))
        )

    by_series: dict[SeriesKey, list[tuple[int, Counted]]] = defaultdict(list)
    for key, index, item in counted:
        by_series[key].append((index, item))
    if not plan.group_by_customer and not plan.group_by and not by_series:
        # U6: without grouping there is exactly one series, all-empty when nothing counts.
        by_series[(None, None, ())] = []

    series = []
    for key in sorted(by_series, key=series_order):
        members = by_series[key]
        buckets = [
            UsageBucket(
                plan.edges[index],
                plan.edges[index + 1],
                value(plan, [item for at, item in members if at == index]),
                sum(1 for at, _ in members if at == index),
            )
            for index in range(len(plan.edges) - 1)
        ]
        customer_id, external_customer_id, values = key
        series.append(
            UsageSeries(
                group_values=group_values(plan.group_by, values),
                customer_id=customer_id,
                external_customer_id=external_customer_id,
                # U4: totals from the events themselves, never from bucket values.
                total=value(plan, [item for _, item in members]),
                event_count=len(members),
                buckets=buckets,
            )
        )
    every = [item for _, _, item in counted]
    return MeterUsage(
        meter=plan.meter,
        start=plan.start,
        end=plan.end,
        granularity=plan.granularity,
        time_zone=plan.time_zone,
        total=value(plan, every),
        event_count=len(every),
        series=series,
    )


def _number(raw: Any) -> Decimal | None:
    """U2: the value of a key holding a JSON number; booleans are not numbers."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return number_of(raw)


def _distinct(raw: Any) -> tuple[str, GroupValue | Decimal] | None:
    """UNIQUE_COUNT compares as M4: by JSON type first, numbers by value."""
    if isinstance(raw, bool):
        return ("boolean", raw)
    if isinstance(raw, str):
        return ("string", raw)
    number = _number(raw)
    return None if number is None else ("number", number)


def value(plan: UsagePlan, items: Sequence[Counted]) -> Decimal | None:
    """U2/U3: the aggregation of these events; "0" or null when none holds a value."""
    aggregation = plan.aggregation
    if aggregation is AggregationType.COUNT:
        return Decimal(len(items))
    key = plan.key
    assert key is not None, "M1: every aggregation but COUNT has a key"
    if aggregation is AggregationType.UNIQUE_COUNT:
        distinct = {_distinct(item.metadata.get(key)) for item in items}
        distinct.discard(None)
        return Decimal(len(distinct))
    numbered = [
        (item.event.timestamp, item.event.sequence, number)
        for item in items
        if (number := _number(item.metadata.get(key))) is not None
    ]
    numbers = [number for _, _, number in numbered]
    if aggregation is AggregationType.SUM:
        total = Decimal(0)
        for number in numbers:
            total = add(total, number)
        return total
    if not numbers:
        return None
    if aggregation is AggregationType.MIN:
        return min(numbers)
    if aggregation is AggregationType.MAX:
        return max(numbers)
    if aggregation is AggregationType.LAST:
        # The latest event by (timestamp, insertion order) among those holding a number.
        return max(numbered, key=lambda entry: (entry[0], entry[1]))[2]
    total = Decimal(0)
    for number in numbers:
        total = add(total, number)
    return average(total, len(numbers))


def volume(
    plan: VolumePlan,
    query: VolumeQuery,
    events: Iterable[EventHistory],
    customer: CustomerState | None,
) -> EventVolume:
    """V1/V2: the events counted per bucket of the widened range; `customer` is the one
    `query.customer_id` names (None when it names none).

    An event counts with its current name, deprecated ones only with includeDeprecated;
    its moment is its timestamp or, for INGESTION_TIME, when it was ingested. Events of a
    backfill not reflected are never counted: the count is of what `events` lists (B3).
    """
    counts = [0] * (len(plan.edges) - 1)
    for event in events:
        if event.counted_from is None:
            continue
        if event.deprecated_at is not None and not query.include_deprecated:
            continue
        if query.event_name is not None and event.revisions[-1].event_name != query.event_name:
            continue
        if customer is not None and not (
            event.customer_id == customer.id
            or (
                customer.external_id is not None
                and event.external_customer_id == customer.external_id
            )
        ):
            continue
        moment = event.ingested_at if query.basis is VolumeBasis.INGESTION_TIME else event.timestamp
        if plan.edges[0] <= moment < plan.edges[-1]:
            counts[bucket_index(plan.edges, moment)] += 1
    buckets = [
        VolumeBucket(plan.edges[index], plan.edges[index + 1], count)
        for index, count in enumerate(counts)
    ]
    return EventVolume(sum(counts), buckets)
