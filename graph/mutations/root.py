"""The Mutation type: each field's resolver lives in its own module."""

import strawberry

from graph.backfills.resolvers import (
    BackfillPayload,
    close_backfill,
    create_backfill,
    revert_backfill,
)
from graph.mutations.amend_event import AmendEventPayload, amend_event
from graph.mutations.archive_meter import MeterPayload, archive_meter, unarchive_meter
from graph.mutations.create_customer import CreateCustomerPayload, create_customer
from graph.mutations.create_meter import CreateMeterPayload, create_meter
from graph.mutations.deprecate_event import DeprecateEventPayload, deprecate_event
from graph.mutations.ingest_events import IngestEventsPayload, ingest_events


@strawberry.type
class Mutation:
    ingest_events: IngestEventsPayload = strawberry.mutation(
        resolver=ingest_events,
        description="Store a batch of events, each exactly once: all of them or none.",
    )
    amend_event: AmendEventPayload = strawberry.mutation(
        resolver=amend_event,
        description="Replace an event's body with a new revision; earlier bodies stay readable.",
    )
    deprecate_event: DeprecateEventPayload = strawberry.mutation(
        resolver=deprecate_event,
        description="Mark an event deprecated: kept and readable, no longer billed.",
    )
    create_customer: CreateCustomerPayload = strawberry.mutation(resolver=create_customer)
    create_meter: CreateMeterPayload = strawberry.mutation(resolver=create_meter)
    archive_meter: MeterPayload = strawberry.mutation(resolver=archive_meter)
    unarchive_meter: MeterPayload = strawberry.mutation(resolver=unarchive_meter)
    create_backfill: BackfillPayload = strawberry.mutation(
        resolver=create_backfill,
        description="Start loading or replacing history: nothing of it counts until it is closed.",
    )
    close_backfill: BackfillPayload = strawberry.mutation(
        resolver=close_backfill,
        description=(
            "Reflect a backfill in one step: its events count, the events it replaces are "
            "deprecated. Closing it again changes nothing."
        ),
    )
    revert_backfill: BackfillPayload = strawberry.mutation(
        resolver=revert_backfill,
        description=(
            "Undo a backfill in one step: its events are deprecated, the events it replaced "
            "restored. A PENDING backfill reverted is never reflected."
        ),
    )
