"""Aggregated cells of a usage answer, how a streaming source fills them, and the answer.

A source (the SQL of each database today; per-meter rollups later) answers a UsagePlan
with UsageCells: for each series, a value per non-empty bucket and a total, and a grand
total, each computed from the events (U4). `assemble` makes them the dense, ordered
answer of U5/U6, the same way whatever the source.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from db.rules.meters import AggregationType
from db.usage.decimals import add, average
from db.usage.plan import UsagePlan
from db.usage.query import (
    MeterUsage,
    SeriesKey,
    UsageBucket,
    UsageSeries,
    group_values,
    series_order,
)


@dataclass(frozen=True, slots=True)
class Cell:
    value: Decimal | None
    event_count: int


@dataclass
class SeriesCells:
    buckets: dict[int, Cell] = field(default_factory=dict)
    total: Cell | None = None


@dataclass
class UsageCells:
    series: dict[SeriesKey, SeriesCells] = field(default_factory=dict)
    total: Cell | None = None


def empty_value(aggregation: AggregationType) -> Decimal | None:
    """U3: "0" for COUNT, SUM and UNIQUE_COUNT of no events; null for the others."""
    if aggregation in (AggregationType.COUNT, AggregationType.SUM, AggregationType.UNIQUE_COUNT):
        return Decimal(0)
    return None


def assemble(plan: UsagePlan, cells: UsageCells) -> MeterUsage:
    empty = Cell(empty_value(plan.aggregation), 0)
    series_cells = dict(cells.series)
    if not plan.group_by and not plan.group_by_customer and not series_cells:
        series_cells[(None, None, ())] = SeriesCells()  # U6: exactly one series
    series = []
    for key in sorted(series_cells, key=series_order):
        found = series_cells[key]
        buckets = []
        for index in range(len(plan.edges) - 1):
            cell = found.buckets.get(index, empty)
            buckets.append(
                UsageBucket(plan.edges[index], plan.edges[index + 1], cell.value, cell.event_count)
            )
        total = found.total or empty
        customer_id, external_customer_id, values = key
        series.append(
            UsageSeries(
                group_values=group_values(plan.group_by, values),
                customer_id=customer_id,
                external_customer_id=external_customer_id,
                total=total.value,
                event_count=total.event_count,
                buckets=buckets,
            )
        )
    total = cells.total or empty
    return MeterUsage(
        meter=plan.meter,
        start=plan.start,
        end=plan.end,
        granularity=plan.granularity,
        time_zone=plan.time_zone,
        total=total.value,
        event_count=total.event_count,
        series=series,
    )


class Accumulator:
    """One cell's aggregation, fed event by event (for sources that stream events)."""

    __slots__ = ("aggregation", "distinct", "event_count", "last", "numbers", "total", "value")

    def __init__(self, aggregation: AggregationType) -> None:
        self.aggregation = aggregation
        self.event_count = 0
        self.numbers = 0
        self.total = Decimal(0)
        # MIN/MAX: the extreme so far; LAST: the number of the latest event so far.
        self.value: Decimal | None = None
        self.last: tuple[datetime, int] | None = None
        self.distinct: set[tuple[str, Any]] = set()

    def add(self, timestamp: datetime, sequence: int, member: Any) -> None:
        """One event; `member` is its value at the key (int, Decimal, bool, str) or None."""
        self.event_count += 1
        aggregation = self.aggregation
        if aggregation is AggregationType.COUNT or member is None:
            return
        if aggregation is AggregationType.UNIQUE_COUNT:
            if isinstance(member, bool):
                self.distinct.add(("boolean", member))
            elif isinstance(member, str):
                self.distinct.add(("string", member))
            else:
                self.distinct.add(("number", Decimal(member)))
            return
        if isinstance(member, bool | str):
            return  # U2: only numbers are aggregated
        number = Decimal(member)
        self.numbers += 1
        if aggregation in (AggregationType.SUM, AggregationType.AVG):
            self.total = add(self.total, number)
        elif aggregation is AggregationType.MIN:
            if self.value is None or number < self.value:
                self.value = number
        elif aggregation is AggregationType.MAX:
            if self.value is None or number > self.value:
                self.value = number
        elif aggregation is AggregationType.LAST:
            moment = (timestamp, sequence)
            if self.last is None or moment > self.last:
                self.last, self.value = moment, number

    def cell(self) -> Cell:
        aggregation = self.aggregation
        if aggregation is AggregationType.COUNT:
            value: Decimal | None = Decimal(self.event_count)
        elif aggregation is AggregationType.UNIQUE_COUNT:
            value = Decimal(len(self.distinct))
        elif aggregation is AggregationType.SUM:
            value = self.total
        elif aggregation is AggregationType.AVG:
            value = average(self.total, self.numbers) if self.numbers else None
        else:
            value = self.value
        return Cell(value, self.event_count)
