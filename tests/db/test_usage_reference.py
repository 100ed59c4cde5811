"""The reference aggregator (db.usage.reference) on small data sets computed by hand."""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from db.filters import Clause, Filter, FilterOperator
from db.records import MeterRecord
from db.rules.meters import AggregationType
from db.usage.buckets import time_zone
from db.usage.plan import UsagePlan, VolumePlan
from db.usage.query import Granularity, MeterUsage, VolumeBasis, VolumeQuery
from db.usage.reference import CustomerState, EventHistory, Revision, usage, volume

DAY = datetime(2026, 1, 10, tzinfo=UTC)
EDGES = [DAY + timedelta(hours=hour) for hour in range(0, 25, 6)]  # four 6-hour buckets
BEFORE = DAY - timedelta(days=1)  # when events are ingested, unless said otherwise


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def meter(aggregation: AggregationType, key: str | None = "tokens") -> MeterRecord:
    return MeterRecord(
        id="mtr_1",
        business_id="bus_1",
        name="m",
        description=None,
        event_name="llm",
        aggregation_type=aggregation.value,
        aggregation_key=key,
        measurement_unit=None,
        filter=None,
        archived_at=None,
        created_at=BEFORE,
        updated_at=BEFORE,
    )


def plan(aggregation: AggregationType, key: str | None = "tokens", **fields: Any) -> UsagePlan:
    base = UsagePlan(
        meter=meter(aggregation, key),
        start=EDGES[0],
        end=EDGES[-1],
        granularity=Granularity.HOUR,
        time_zone="UTC",
        edges=EDGES,
        filters=(),
        customer_ids=None,
        external_customer_ids=None,
        group_by=(),
        group_by_customer=False,
        as_of=None,
    )
    return replace(base, **fields)


def event(
    sequence: int,
    hours: float,
    metadata: dict[str, Any],
    *,
    customer_id: str | None = None,
    external_customer_id: str | None = "acme",
    event_name: str = "llm",
    ingested_at: datetime = BEFORE,
    deprecated_at: datetime | None = None,
    amendments: Sequence[tuple[datetime, dict[str, Any]]] = (),
) -> EventHistory:
    revisions = [Revision(1, event_name, metadata, ingested_at)]
    for number, (made, body) in enumerate(amendments, start=2):
        revisions.append(Revision(number, event_name, body, made))
    return EventHistory(
        sequence=sequence,
        customer_id=customer_id,
        external_customer_id=None if customer_id is not None else external_customer_id,
        timestamp=at(hours),
        ingested_at=ingested_at,
        deprecated_at=deprecated_at,
        revisions=revisions,
        counted_from=ingested_at,
    )


def totals(answer: MeterUsage) -> tuple[str | None, int]:
    return (None if answer.total is None else str(answer.total), answer.event_count)


# Numbers, a numeric string, a boolean and a missing key; the latest number (by timestamp,
# then insertion order) is the 3 at 13:00 inserted after the 0.2 at the same moment.
TYPED = [
    event(1, 1, {"tokens": 0.1}),
    event(3, 13, {"tokens": 3}),
    event(2, 13, {"tokens": 0.2}),
    event(4, 20, {"tokens": "7"}),
    event(5, 21, {"tokens": True}),
    event(6, 22, {}),
]


@pytest.mark.parametrize(
    ("aggregation", "total"),
    [
        (AggregationType.COUNT, "6"),
        (AggregationType.SUM, "3.3"),
        (AggregationType.MIN, "0.1"),
        (AggregationType.MAX, "3"),
        (AggregationType.AVG, "1.1"),
        (AggregationType.LAST, "3"),
        (AggregationType.UNIQUE_COUNT, "5"),  # 0.1, 3, 0.2, "7", true
    ],
)
def test_u2_each_aggregation_over_typed_values(aggregation: AggregationType, total: str) -> None:
    answer = usage(plan(aggregation), TYPED, [])
    assert totals(answer) == (total, 6)


def test_u2_unique_count_compares_as_m4() -> None:
    # 1 and 1.0 are one value; "1" and true are two more
    events = [
        event(1, 1, {"tokens": 1}),
        event(2, 2, {"tokens": 1.0}),
        event(3, 3, {"tokens": "1"}),
        event(4, 4, {"tokens": True}),
        event(5, 5, {}),
    ]
    assert totals(usage(plan(AggregationType.UNIQUE_COUNT), events, [])) == ("3", 5)


def test_u2_last_is_the_latest_event_holding_a_number() -> None:
    # The latest event holds a string: LAST skips it
    events = [event(2, 1, {"tokens": 5}), event(1, 2, {"tokens": 7}), event(3, 3, {"tokens": "x"})]
    assert totals(usage(plan(AggregationType.LAST), events, [])) == ("7", 3)


@pytest.mark.parametrize(
    ("aggregation", "empty"),
    [
        (AggregationType.COUNT, "0"),
        (AggregationType.SUM, "0"),
        (AggregationType.UNIQUE_COUNT, "0"),
        (AggregationType.MIN, None),
        (AggregationType.MAX, None),
        (AggregationType.AVG, None),
        (AggregationType.LAST, None),
    ],
)
def test_u3_empty_set_is_zero_or_null(aggregation: AggregationType, empty: str | None) -> None:
    answer = usage(plan(aggregation), [event(1, 1, {"tokens": "x"}, event_name="other")], [])
    assert totals(answer) == (empty, 0)
    # U6: without grouping, one series, every bucket empty
    [series] = answer.series
    assert [bucket.value for bucket in series.buckets] == [
        None if empty is None else Decimal(empty)
    ] * 4


def test_u4_unique_count_total_is_not_the_sum_of_buckets() -> None:
    events = [
        event(1, 1, {"model": "a"}),
        event(2, 7, {"model": "a"}),
        event(3, 8, {"model": "b"}),
    ]
    answer = usage(plan(AggregationType.UNIQUE_COUNT, "model"), events, [])
    [series] = answer.series
    assert [bucket.value for bucket in series.buckets] == [Decimal(1), Decimal(2), 0, 0]
    assert answer.total == series.total == Decimal(2)


def test_u4_average_total_is_not_the_average_of_buckets() -> None:
    events = [event(1, 1, {"tokens": 1}), event(2, 7, {"tokens": 2}), event(3, 8, {"tokens": 6})]
    answer = usage(plan(AggregationType.AVG), events, [])
    [series] = answer.series
    assert [bucket.value for bucket in series.buckets] == [Decimal(1), Decimal(4), None, None]
    assert answer.total == Decimal(3)  # (1 + 2 + 6) / 3, not (1 + 4) / 2


def test_u5_events_fall_into_their_bucket_and_outside_the_range_not_at_all() -> None:
    events = [
        event(1, -0.001, {}),
        event(2, 0, {}),
        event(3, 6, {}),
        event(4, 23.999, {}),
        event(5, 24, {}),
    ]
    [series] = usage(plan(AggregationType.COUNT, None), events, []).series
    assert [bucket.event_count for bucket in series.buckets] == [1, 1, 0, 1]
    assert [bucket.start for bucket in series.buckets] == EDGES[:-1]
    assert [bucket.end for bucket in series.buckets] == EDGES[1:]


def test_u6_series_by_customer_then_group_values_with_null_last() -> None:
    customers = [
        CustomerState("cus_B", "acme", BEFORE),
        CustomerState("cus_A", None, BEFORE),
    ]
    events = [
        event(1, 1, {"tokens": 1, "model": "b"}),  # acme → cus_B
        event(2, 1, {"tokens": 2, "model": "a"}, customer_id="cus_B"),
        event(3, 1, {"tokens": 4, "model": 2}),
        event(4, 1, {"tokens": 8, "model": 1.0}),
        event(5, 1, {"tokens": 16, "model": True}),
        event(6, 1, {"tokens": 32}),
        event(7, 1, {"tokens": 64, "model": "z"}, customer_id="cus_A"),
        event(8, 1, {"tokens": 128, "model": 1}, external_customer_id="ghost"),
    ]
    answer = usage(
        plan(AggregationType.SUM, group_by=("model",), group_by_customer=True), events, customers
    )
    assert [
        (series.customer_id, series.external_customer_id, series.group_values, series.total)
        for series in answer.series
    ] == [
        ("cus_A", None, {"model": "z"}, Decimal(64)),
        # booleans, then numbers by value, then strings, then null
        ("cus_B", None, {"model": True}, Decimal(16)),
        ("cus_B", None, {"model": 1}, Decimal(8)),
        ("cus_B", None, {"model": 2}, Decimal(4)),
        ("cus_B", None, {"model": "a"}, Decimal(2)),
        ("cus_B", None, {"model": "b"}, Decimal(1)),
        ("cus_B", None, {"model": None}, Decimal(32)),
        # events of an externalCustomerId that no customer has: a series of their own, last
        (None, "ghost", {"model": 1}, Decimal(128)),
    ]
    assert answer.total == Decimal(255)
    # 1.0 is shown as the integer it equals
    assert type(answer.series[2].group_values["model"]) is int


def test_u6_without_grouping_exactly_one_series_even_when_nothing_counts() -> None:
    answer = usage(plan(AggregationType.SUM), [], [])
    assert len(answer.series) == 1
    assert answer.series[0].group_values == {}
    grouped = usage(plan(AggregationType.SUM, group_by=("model",)), [], [])
    assert grouped.series == []


def test_u1_scope_customers_filters_names_and_deprecations() -> None:
    customers = [CustomerState("cus_A", "acme", BEFORE)]
    events = [
        event(1, 1, {"tokens": 1}),  # acme by externalId
        event(2, 1, {"tokens": 2}, customer_id="cus_A"),
        event(3, 1, {"tokens": 4}, external_customer_id="zed"),
        event(4, 1, {"tokens": 8}, external_customer_id="other"),
        event(5, 1, {"tokens": 16}, deprecated_at=BEFORE + timedelta(hours=1)),
        event(6, 1, {"tokens": 32}, event_name="other"),
        event(7, 1, {"tokens": -1}),
    ]
    scoped = plan(AggregationType.SUM, customer_ids=("cus_A",), external_customer_ids=("acme",))
    assert totals(usage(scoped, events, customers)) == ("2", 3)
    union = replace(scoped, external_customer_ids=("acme", "zed"))
    assert totals(usage(union, events, customers)) == ("6", 4)
    positive = Filter(clauses=(Clause("tokens", FilterOperator.GREATER_THAN, 0),))
    assert totals(usage(plan(AggregationType.SUM, filters=(positive,)), events, customers)) == (
        "15",
        4,
    )


def test_u8_as_of_undoes_later_ingests_amendments_deprecations_and_customers() -> None:
    as_of = BEFORE + timedelta(hours=5)
    customers = [CustomerState("cus_A", "acme", BEFORE + timedelta(hours=6))]
    events = [
        # amended after asOf: counts with its first body then, its second now
        event(1, 1, {"tokens": 10}, amendments=[(BEFORE + timedelta(hours=7), {"tokens": 1})]),
        # amended before asOf: its second body either way
        event(2, 2, {"tokens": 20}, amendments=[(BEFORE + timedelta(hours=4), {"tokens": 2})]),
        # deprecated after asOf: counted then, not now
        event(3, 3, {"tokens": 100}, deprecated_at=BEFORE + timedelta(hours=8)),
        # ingested after asOf: not counted then
        event(4, 4, {"tokens": 1000}, ingested_at=BEFORE + timedelta(hours=9)),
        # ingested exactly at asOf: counted then
        event(5, 5, {"tokens": 5000}, ingested_at=as_of),
    ]
    now = usage(plan(AggregationType.SUM, group_by_customer=True), events, customers)
    then = usage(plan(AggregationType.SUM, group_by_customer=True, as_of=as_of), events, customers)
    assert totals(now) == ("6003", 4)
    assert totals(then) == ("5112", 4)
    # The customer with externalId acme did not exist yet at asOf: its events were a series
    # of their own then
    assert [(s.customer_id, s.external_customer_id) for s in now.series] == [("cus_A", None)]
    assert [(s.customer_id, s.external_customer_id) for s in then.series] == [(None, "acme")]


def test_v1_reference_volume_counts_per_widened_bucket() -> None:
    zone = time_zone("UTC")
    assert zone is not None
    edges = [DAY + timedelta(hours=hour) for hour in range(0, 4)]
    volume_plan = VolumePlan(edges[0], edges[-1], edges)
    customer = CustomerState("cus_A", "acme", BEFORE)
    events = [
        event(1, 0.5, {}),  # acme: the customer's by externalId
        event(2, 0.5, {}, customer_id="cus_A"),
        event(3, 1.5, {}, external_customer_id="zed"),
        event(4, 2.5, {}, deprecated_at=BEFORE),
        event(5, 2.5, {}, event_name="other", ingested_at=DAY + timedelta(minutes=10)),
    ]
    query = VolumeQuery(start=edges[0], end=edges[-1])
    answer = volume(volume_plan, query, events, None)
    assert [bucket.count for bucket in answer.buckets] == [2, 1, 1]
    assert answer.total == 4
    everything = replace(query, include_deprecated=True)
    assert volume(volume_plan, everything, events, None).total == 5
    assert volume(volume_plan, query, events, customer).total == 3
    assert volume(volume_plan, replace(query, event_name="other"), events, None).total == 1
    by_arrival = replace(query, basis=VolumeBasis.INGESTION_TIME)
    assert [bucket.count for bucket in volume(volume_plan, by_arrival, events, None).buckets] == [
        1,
        0,
        0,
    ]
