from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry

from db.records import CustomerRecord
from db.usage.query import EventVolume as EventVolumeAnswer
from db.usage.query import Granularity as DomainGranularity
from db.usage.query import MeterUsage as MeterUsageAnswer
from db.usage.query import UsageSeries as UsageSeriesAnswer
from db.usage.query import VolumeBasis as DomainVolumeBasis
from graph.scalars import JSON
from graph.types.customer import Customer
from graph.types.meter import Meter

Granularity = strawberry.enum(
    DomainGranularity,
    name="Granularity",
    description=(
        "Calendar units of the query's time zone: a day runs from local midnight to local "
        "midnight (23 or 25 hours on daylight-saving days), a week from Monday."
    ),
)
VolumeBasis = strawberry.enum(
    DomainVolumeBasis,
    name="VolumeBasis",
    description="EVENT_TIME buckets events by timestamp, INGESTION_TIME by ingestedAt.",
)


@strawberry.type(description="One period: [start, end), in UTC.")
class UsageBucket:
    start: datetime
    end: datetime
    value: Decimal | None = strawberry.field(
        description='The aggregation over the bucket\'s events; "0" or null when none counts.'
    )
    event_count: int = strawberry.field(description="Every event of the bucket in scope.")


@strawberry.type(description="The usage of one combination of customer and group values.")
class UsageSeries:
    group_values: JSON = strawberry.field(
        description="The groupBy keys and this series' value of each; null where absent."
    )
    customer: Customer | None = strawberry.field(
        description="With groupByCustomer: the customer; null for events of an "
        "externalCustomerId that no customer has."
    )
    external_customer_id: str | None = strawberry.field(
        description="With groupByCustomer, for events of an externalCustomerId that no "
        "customer has: that externalCustomerId."
    )
    total: Decimal | None = strawberry.field(
        description="The aggregation over all of the series' events (not a sum of buckets)."
    )
    event_count: int
    buckets: list[UsageBucket]

    @classmethod
    def from_answer(
        cls, series: UsageSeriesAnswer, customers: dict[str, CustomerRecord]
    ) -> "UsageSeries":
        customer = customers.get(series.customer_id) if series.customer_id else None
        group_values: Any = series.group_values
        return cls(
            group_values=group_values,
            customer=Customer.from_record(customer) if customer else None,
            external_customer_id=series.external_customer_id,
            total=series.total,
            event_count=series.event_count,
            buckets=[
                UsageBucket(
                    start=bucket.start,
                    end=bucket.end,
                    value=bucket.value,
                    event_count=bucket.event_count,
                )
                for bucket in series.buckets
            ],
        )


@strawberry.type(description="How much of a meter was used, per period and series, exactly.")
class MeterUsage:
    meter: Meter
    from_: datetime = strawberry.field(name="from")
    to: datetime
    granularity: Granularity | None  # type: ignore[valid-type]
    time_zone: str
    total: Decimal | None = strawberry.field(
        description="The aggregation over every event in scope (not a sum of series)."
    )
    event_count: int = strawberry.field(description="Every event in scope.")
    series: list[UsageSeries]

    @classmethod
    def from_answer(cls, answer: MeterUsageAnswer) -> "MeterUsage":
        return cls(
            meter=Meter.from_record(answer.meter),
            from_=answer.start,
            to=answer.end,
            granularity=answer.granularity,
            time_zone=answer.time_zone,
            total=answer.total,
            event_count=answer.event_count,
            series=[UsageSeries.from_answer(each, answer.customers) for each in answer.series],
        )


@strawberry.type
class VolumeBucket:
    start: datetime
    end: datetime
    count: int


@strawberry.type(description="How many events arrived, per period.")
class EventVolume:
    total: int
    buckets: list[VolumeBucket]

    @classmethod
    def from_answer(cls, answer: EventVolumeAnswer) -> "EventVolume":
        return cls(
            total=answer.total,
            buckets=[
                VolumeBucket(start=bucket.start, end=bucket.end, count=bucket.count)
                for bucket in answer.buckets
            ],
        )
