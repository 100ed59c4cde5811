from datetime import datetime

import strawberry

from db.usage.query import Granularity as DomainGranularity
from db.usage.query import UsageQuery, VolumeQuery
from db.usage.query import VolumeBasis as DomainVolumeBasis
from graph.types.filter_input import MeterFilterInput
from graph.usage.types import Granularity, VolumeBasis


@strawberry.input(description="A meter's usage over [from, to), per bucket and series.")
class MeterUsageInput:
    meter_id: strawberry.ID = strawberry.field(description="Archived meters work too.")
    from_: datetime = strawberry.field(name="from", description="Inclusive.")
    to: datetime = strawberry.field(description="Exclusive.")
    granularity: Granularity | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Without one, a single bucket spans the range."
    )
    time_zone: str = strawberry.field(
        default="UTC", description='An IANA time zone name, such as "Europe/Berlin".'
    )
    customer_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="1–100 customers: their events sent by id and by their externalId.",
    )
    external_customer_ids: list[str] | None = strawberry.field(
        default=None, description="1–100 externalCustomerIds; with customerIds, the union."
    )
    filter: MeterFilterInput | None = strawberry.field(
        default=None, description="Narrows the meter's own filter further (AND)."
    )
    group_by: list[str] = strawberry.field(
        default_factory=list, description="0–3 metadata keys, one series per combination."
    )
    group_by_customer: bool = False
    as_of: datetime | None = strawberry.field(
        default=None,
        description="Answer as the service would have at that moment: later ingests, "
        "amendments and deprecations are left out.",
    )

    def to_domain(self) -> UsageQuery:
        return UsageQuery(
            meter_id=self.meter_id,
            start=self.from_,
            end=self.to,
            granularity=self.granularity,
            time_zone=self.time_zone,
            customer_ids=tuple(self.customer_ids) if self.customer_ids is not None else None,
            external_customer_ids=(
                tuple(self.external_customer_ids)
                if self.external_customer_ids is not None
                else None
            ),
            filter=self.filter.to_raw() if self.filter is not None else None,
            group_by=tuple(self.group_by),
            group_by_customer=self.group_by_customer,
            as_of=self.as_of,
        )


@strawberry.input(description="How many events arrived per bucket, from and to widened.")
class EventVolumeInput:
    from_: datetime = strawberry.field(name="from", description="Inclusive.")
    to: datetime | None = strawberry.field(default=None, description="Exclusive; now if absent.")
    granularity: Granularity = DomainGranularity.HOUR  # type: ignore[valid-type]
    time_zone: str = strawberry.field(
        default="UTC", description='An IANA time zone name, such as "Europe/Berlin".'
    )
    basis: VolumeBasis = DomainVolumeBasis.EVENT_TIME  # type: ignore[valid-type]
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="Events sent with this customer's id or with its externalId."
    )
    event_name: str | None = None
    include_deprecated: bool = False

    def to_domain(self) -> VolumeQuery:
        return VolumeQuery(
            start=self.from_,
            end=self.to,
            granularity=self.granularity,
            time_zone=self.time_zone,
            basis=self.basis,
            customer_id=self.customer_id,
            event_name=self.event_name,
            include_deprecated=self.include_deprecated,
        )
