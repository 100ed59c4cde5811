from datetime import datetime
from typing import Any

import strawberry

from db.filters import Conjunction as DomainConjunction
from db.filters import FilterOperator as DomainFilterOperator
from db.records import MeterRecord
from db.rules.meters import AggregationType as DomainAggregationType
from graph.scalars import JSON
from graph.types.node import Node

Conjunction = strawberry.enum(DomainConjunction, name="Conjunction")
FilterOperator = strawberry.enum(
    DomainFilterOperator,
    name="FilterOperator",
    description=(
        "Comparisons of one metadata value. A clause only ever compares values of one JSON "
        "type, and is false for an event that lacks the key or holds another type there."
    ),
)
AggregationType = strawberry.enum(DomainAggregationType, name="AggregationType")


@strawberry.type
class FilterClause:
    key: str
    operator: FilterOperator  # type: ignore[valid-type]
    value: JSON


@strawberry.type
class MeterFilter:
    conjunction: Conjunction  # type: ignore[valid-type]
    clauses: list[FilterClause]
    groups: list["MeterFilter"]

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "MeterFilter":
        return cls(
            conjunction=DomainConjunction(document["conjunction"]),
            clauses=[
                FilterClause(
                    key=clause["key"],
                    operator=DomainFilterOperator(clause["operator"]),
                    value=clause["value"],
                )
                for clause in document["clauses"]
            ],
            groups=[cls.from_document(group) for group in document["groups"]],
        )


@strawberry.type
class MeterAggregation:
    type: AggregationType  # type: ignore[valid-type]
    key: str | None = strawberry.field(description="The metadata key aggregated; null for COUNT.")


@strawberry.type(description="An event name, an aggregation and an optional metadata filter.")
class Meter(Node):
    name: str
    description: str | None
    event_name: str
    aggregation: MeterAggregation
    measurement_unit: str | None
    filter: MeterFilter | None
    dimensions: list[str] = strawberry.field(
        description=(
            "Metadata keys the meter's pre-aggregated usage is kept by: meterUsage grouped "
            "by any of them answers as fast as without groupBy."
        )
    )
    archived: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: MeterRecord) -> "Meter":
        return cls(
            id=strawberry.ID(record.id),
            name=record.name,
            description=record.description,
            event_name=record.event_name,
            aggregation=MeterAggregation(
                type=DomainAggregationType(record.aggregation_type), key=record.aggregation_key
            ),
            measurement_unit=record.measurement_unit,
            filter=MeterFilter.from_document(record.filter) if record.filter is not None else None,
            dimensions=list(record.dimensions),
            archived=record.archived,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
