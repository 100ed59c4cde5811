"""The Mutation type: each field's resolver lives in its own module."""

import strawberry

from graph.mutations.create_customer import CreateCustomerPayload, create_customer
from graph.mutations.ingest_events import IngestEventsPayload, ingest_events


@strawberry.type
class Mutation:
    ingest_events: IngestEventsPayload = strawberry.mutation(
        resolver=ingest_events,
        description="Store a batch of events, each exactly once: all of them or none.",
    )
    create_customer: CreateCustomerPayload = strawberry.mutation(resolver=create_customer)
