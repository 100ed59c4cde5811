"""Aggregated cells of a usage answer, how a streaming source fills them, and the answer.

A source (the SQL of each database, or the per-meter rollups) answers a UsagePlan
with UsageCells: for each series, a value per non-empty bucket and a total, and a grand
total, each computed from the events (U4). `assemble` makes them the dense, ordered
answer of U5/U6, the same way whatever the source.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from db.rules.meters import AggregationType
from db.usage.decimals import add, average, number_of
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


class Partial:
    """One cell's mergeable state, fed event by event or merged from other partials.

    The rollups store exactly these fields per quarter-hour, and the answer merges them:
    counts and the exact sum add, minimum and maximum compare, the latest number wins by
    (timestamp, sequence). AVG divides the merged sum by the merged count only at the end
    (U4). UNIQUE_COUNT keeps its distinct members, which only a partial fed from events
    has: rollups never serve it.
    """

    __slots__ = ("distinct", "event_count", "last", "maximum", "minimum", "numbers", "total")

    def __init__(self, *, with_distinct: bool = False) -> None:
        self.event_count = 0
        self.numbers = 0
        self.total = Decimal(0)
        self.minimum: Decimal | None = None
        self.maximum: Decimal | None = None
        # The latest number so far, with its (timestamp, sequence).
        self.last: tuple[datetime, int, Decimal] | None = None
        self.distinct: set[tuple[str, Any]] | None = set() if with_distinct else None

    def add(self, timestamp: datetime, sequence: int, member: Any) -> None:
        """One event; `member` is its value at the key (int, Decimal, bool, str) or None."""
        self.event_count += 1
        if member is None or isinstance(member, dict | list):
            return  # absent, or not a JSON scalar: neither a number nor a distinct member
        if self.distinct is not None:
            if isinstance(member, bool):
                self.distinct.add(("boolean", member))
            elif isinstance(member, str):
                self.distinct.add(("string", member))
            else:
                self.distinct.add(("number", _exact(member)))
        if isinstance(member, bool | str):
            return  # U2: only numbers are aggregated
        number = _exact(member)
        self.numbers += 1
        self.total = add(self.total, number)
        if self.minimum is None or number < self.minimum:
            self.minimum = number
        if self.maximum is None or number > self.maximum:
            self.maximum = number
        if self.last is None or (timestamp, sequence) > self.last[:2]:
            self.last = (timestamp, sequence, number)

    def merge(self, other: "Partial") -> None:
        assert self.distinct is None, "distinct sets do not merge"
        assert other.distinct is None, "distinct sets do not merge"
        self.event_count += other.event_count
        self.numbers += other.numbers
        self.total = add(self.total, other.total)
        if other.minimum is not None and (self.minimum is None or other.minimum < self.minimum):
            self.minimum = other.minimum
        if other.maximum is not None and (self.maximum is None or other.maximum > self.maximum):
            self.maximum = other.maximum
        if other.last is not None and (self.last is None or other.last[:2] > self.last[:2]):
            self.last = other.last

    def cell(self, aggregation: AggregationType) -> Cell:
        if aggregation is AggregationType.COUNT:
            value: Decimal | None = Decimal(self.event_count)
        elif aggregation is AggregationType.UNIQUE_COUNT:
            assert self.distinct is not None, "UNIQUE_COUNT needs the distinct members"
            value = Decimal(len(self.distinct))
        elif aggregation is AggregationType.SUM:
            value = self.total
        elif aggregation is AggregationType.AVG:
            value = average(self.total, self.numbers) if self.numbers else None
        elif aggregation is AggregationType.MIN:
            value = self.minimum
        elif aggregation is AggregationType.MAX:
            value = self.maximum
        else:
            value = self.last[2] if self.last is not None else None
        return Cell(value, self.event_count)


def _exact(number: int | float | Decimal) -> Decimal:
    """A number as read from JSON text (int, Decimal) or held by a batch (int, float)."""
    return number_of(number) if isinstance(number, float) else Decimal(number)
