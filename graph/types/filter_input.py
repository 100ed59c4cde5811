"""Inputs of the meter filter language, shared by createMeter and events(filter:)."""

from typing import Any

import strawberry

from db.filters import Conjunction as DomainConjunction
from graph.scalars import JSON
from graph.types.meter import Conjunction, FilterOperator


@strawberry.input
class FilterClauseInput:
    key: str = strawberry.field(description="A metadata key, 1–100 characters, exact.")
    operator: FilterOperator  # type: ignore[valid-type]
    value: JSON = strawberry.field(
        description="A string, a number or a boolean, as the operator allows."
    )


@strawberry.input(
    description=(
        "Clauses and groups combined by the conjunction; no clauses and no groups match "
        "every event. At most 3 levels deep and 50 clauses in all."
    )
)
class MeterFilterInput:
    conjunction: Conjunction = DomainConjunction.AND  # type: ignore[valid-type]
    clauses: list[FilterClauseInput] = strawberry.field(default_factory=list)
    groups: list["MeterFilterInput"] = strawberry.field(default_factory=list)

    def to_raw(self) -> dict[str, Any]:
        """Plain nested data for db.filters.parse_filter, which validates it."""
        return {
            "conjunction": self.conjunction,
            "clauses": [
                {"key": clause.key, "operator": clause.operator, "value": clause.value}
                for clause in self.clauses
            ],
            "groups": [group.to_raw() for group in self.groups],
        }
