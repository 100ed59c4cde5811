from datetime import datetime

import strawberry

from db.event_filter import EventFilter
from db.event_filter import EventOrder as DomainEventOrder
from graph.types.filter_input import MeterFilterInput

EventOrder = strawberry.enum(
    DomainEventOrder,
    name="EventOrder",
    description="By timestamp; events with equal timestamps stay in insertion order.",
)


@strawberry.input(name="EventFilter", description="Conditions on events, combined with AND.")
class EventFilterInput:
    customer_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Events sent with this customer's id or with its externalId.",
    )
    external_customer_id: str | None = None
    event_name: str | None = None
    event_ids: list[str] | None = strawberry.field(
        default=None, description="1–500 exact eventIds."
    )
    meter_id: strawberry.ID | None = strawberry.field(
        default=None, description="The meter's event name and filter; archived meters work too."
    )
    metadata: MeterFilterInput | None = None
    start: datetime | None = strawberry.field(default=None, description="Inclusive.")
    end: datetime | None = strawberry.field(default=None, description="Exclusive.")
    include_deprecated: bool = False
    backfill_id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "The events sent into this backfill, whatever its status; without it, events "
            "of a backfill not yet closed are listed nowhere."
        ),
    )

    def to_domain(self) -> EventFilter:
        return EventFilter(
            customer_id=self.customer_id,
            external_customer_id=self.external_customer_id,
            event_name=self.event_name,
            event_ids=tuple(self.event_ids) if self.event_ids is not None else None,
            meter_id=self.meter_id,
            metadata=self.metadata.to_raw() if self.metadata is not None else None,
            start=self.start,
            end=self.end,
            include_deprecated=self.include_deprecated,
            backfill_id=self.backfill_id,
        )
