"""The events connection (SPEC §4, Q2–Q7): every filter, ordering and count in SQL."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from db.database import undone_after
from db.driver_reads import row_value
from db.errors import BadUserInput, UserErrorCode, shown
from db.event_filter import EventFilter, EventOrder
from db.event_json import JsonFields, event_json
from db.filters import Filter, parse_filter_argument
from db.kept import Kept
from db.pagination import Keyset, Page, PageRequest
from db.records import CustomerRecord, EventRecord
from db.repositories.backfills import BackfillRepository
from db.repositories.events import event_record
from db.repositories.meters import MeterRepository
from db.repositories.scoped import BusinessScopedRepository
from db.rules.bounds import MAX_SERVER_ID_LENGTH, each_too_long, refuse, too_long
from db.rules.customers import NOT_A_CUSTOMER_ID, is_customer_id
from db.rules.ingestion import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_NAME_LENGTH,
    MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
)
from db.settings import Settings
from db.tables import customers, events

Item = TypeVar("Item")

MAX_EVENT_IDS = 500

# Q2/Q3: (timestamp, insertion sequence) is total and stable; both orders share a cursor
# kind, because a position means the same in either direction.
KEYSET_COLUMNS = (events.c.timestamp, events.c.sequence)
NEWEST_FIRST = Keyset("events", KEYSET_COLUMNS, (datetime, int), True)
OLDEST_FIRST = Keyset("events", KEYSET_COLUMNS, (datetime, int), False)


@dataclass
class EventConditions:
    """The WHERE of a listing: conditions that all hold, and branches of which one holds."""

    conditions: list[sa.ColumnElement[bool]] = field(default_factory=list)
    branches: list[sa.ColumnElement[bool]] = field(default_factory=list)
    # Metadata filters: conditions whose selectivity no planner statistics can estimate.
    filters_metadata: bool = False


@dataclass(frozen=True, slots=True)
class ListingShape:
    """What the statement of a listing without lookups depends on: which of the filter's
    plain values are given (their values are bound parameters), and what it selects."""

    dialect: str
    # Each event's JSON object of these fields (db.event_json), or every column.
    json_fields: JsonFields | None
    include_deprecated: bool
    given: frozenset[str]


# The filter's plain values, bound as parameters of these names (see _filter_parameters).
PLAIN_VALUES = ("start", "end", "external_customer_id", "event_name", "customer_id")
# Listing statements kept by shape (db.kept), at most this many.
MAX_KEPT_LISTINGS = 256
_kept_listings: Kept[ListingShape, tuple[sa.Select[Any], list[sa.ColumnElement[bool]]]] = Kept(
    MAX_KEPT_LISTINGS
)


def _parameter(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(f"filter_{name}", type_=column.type)


def _filter_parameters(event_filter: EventFilter, event_name: str | None) -> dict[str, Any]:
    """The bound values of the filter's plain values; `event_name` may be a meter's."""
    values = {name: getattr(event_filter, name) for name in PLAIN_VALUES}
    values["event_name"] = event_name
    return {f"filter_{name}": value for name, value in values.items() if value is not None}


def _listing_shape(
    event_filter: EventFilter, dialect: str, json_fields: JsonFields | None
) -> ListingShape | None:
    """The shape of a listing whose statement can be kept, or None: one that looks up a
    meter or backfill first, or whose SQL holds values (metadata filters, eventIds)."""
    if (
        event_filter.meter_id is not None
        or event_filter.metadata is not None
        or event_filter.event_ids is not None
        or event_filter.backfill_id is not None
        or event_filter.replaced_by_backfill_id is not None
    ):
        return None
    given = frozenset(name for name in PLAIN_VALUES if getattr(event_filter, name) is not None)
    return ListingShape(dialect, json_fields, event_filter.include_deprecated, given)


class EventListing(BusinessScopedRepository):
    async def page(
        self,
        event_filter: EventFilter,
        order: EventOrder,
        request: PageRequest,
        settings: Settings,
    ) -> Page[EventRecord]:
        return await self._page(event_filter, order, request, settings, None, event_record)

    async def json_page(
        self,
        event_filter: EventFilter,
        order: EventOrder,
        request: PageRequest,
        settings: Settings,
        fields: JsonFields,
    ) -> Page[str]:
        """The page `page` reads, each event as the JSON text of its object of `fields`
        (db.event_json), written by PostgreSQL."""
        if self.dialect_name != "postgresql":
            raise ValueError("events are written as JSON by PostgreSQL only")
        # Timestamps, sequences and text need no conversion: asyncpg reads the rows.
        return await self._page(event_filter, order, request, settings, fields, _json_text, True)

    async def _page(
        self,
        event_filter: EventFilter,
        order: EventOrder,
        request: PageRequest,
        settings: Settings,
        json_fields: JsonFields | None,
        to_item: Callable[[Any], Item],
        by_driver: bool = False,
    ) -> Page[Item]:
        _check_filter(event_filter)
        shape = _listing_shape(event_filter, self.dialect_name, json_fields)
        kept = _kept_listings.get(shape) if shape is not None else None
        if kept is not None:
            query, branches = kept
            parameters = _filter_parameters(event_filter, event_filter.event_name)
            filters_metadata = False
        else:
            where, parameters = await self._conditions(event_filter)
            # A list of eventIds is found through the unique (business_id, eventId) index;
            # the business must not look tiny to the planner then (see db.lookups).
            lookup = event_filter.event_ids is not None
            query = self.readable_by_parameter(events, *_columns(json_fields), lookup=lookup)
            query, branches = query.where(*where.conditions), where.branches
            filters_metadata = where.filters_metadata
            if shape is not None:
                _kept_listings.keep(shape, (query, branches))
        keyset = NEWEST_FIRST if order is EventOrder.TIMESTAMP_DESC else OLDEST_FIRST
        async with self._ordered_index_scans(enforce=filters_metadata):
            return await self.page_of(
                query,
                keyset,
                request,
                settings,
                to_item,
                branches=branches,
                by_driver=by_driver,
                parameters=parameters,
                template=shape,
            )

    @asynccontextmanager
    async def _ordered_index_scans(self, *, enforce: bool) -> AsyncIterator[None]:
        """On PostgreSQL, make the page read its index in order rather than sort.

        PostgreSQL guesses that a jsonb predicate keeps well under 1% of the rows; believing
        that, it collects every event of the name with a bitmap scan and sorts them, which
        costs the whole matching set however small the page. Walking the ordered index
        costs at most what the bitmap would read and stops at the page's end, so sorting is
        switched off for that one statement.
        """
        if not enforce or self.dialect_name != "postgresql":
            yield
            return
        # The setting is the connection's until reset (read sessions have no transaction
        # for SET LOCAL), and a connection that may not have been reset is not handed to
        # anyone else.
        await self.session.execute(sa.text("SET enable_sort = off"))
        async with undone_after(self.session, "RESET enable_sort"):
            yield

    async def _conditions(
        self, event_filter: EventFilter
    ) -> tuple[EventConditions, dict[str, Any]]:
        """Q4 as SQL, and the values of the parameters it binds; raises BadUserInput for
        an unknown meter or backfill, or an eventName the meter does not count."""
        where = EventConditions()
        if not event_filter.include_deprecated:
            where.conditions.append(events.c.deprecated_at.is_(None))
        await self._add_backfill(event_filter, where)
        if event_filter.start is not None:
            where.conditions.append(events.c.timestamp >= _parameter("start", events.c.timestamp))
        if event_filter.end is not None:
            where.conditions.append(events.c.timestamp < _parameter("end", events.c.timestamp))
        if event_filter.external_customer_id is not None:
            column = events.c.external_customer_id
            where.conditions.append(column == _parameter("external_customer_id", column))
        if event_filter.event_ids is not None:
            event_ids = _checked_event_ids(event_filter)
            where.conditions.append(self.one_of(events.c.event_id, event_ids))

        event_name = event_filter.event_name
        metadata_filters: list[Filter] = []
        if event_filter.meter_id is not None:
            meter = await MeterRepository(self.session, self.business_id).get(event_filter.meter_id)
            if meter is None:
                raise BadUserInput(
                    UserErrorCode.METER_NOT_FOUND,
                    "Your business has no meter with this id.",
                    ("filter", "meterId"),
                )
            if event_name is not None and event_name != meter.event_name:
                raise BadUserInput(
                    UserErrorCode.EVENT_NAME_MISMATCH,
                    f"The meter counts {meter.event_name!r} events; the filter asks for "
                    f"{shown(event_name)!r}.",
                    ("filter", "eventName"),
                )
            event_name = meter.event_name
            if meter.filter is not None:
                metadata_filters.append(Filter.from_document(meter.filter))
        if event_name is not None:
            column = events.c.event_name
            where.conditions.append(column == _parameter("event_name", column))
        if event_filter.metadata is not None:
            metadata_filters.append(
                parse_filter_argument(event_filter.metadata, ("filter", "metadata"))
            )
        where.filters_metadata = bool(metadata_filters)
        where.conditions += [
            metadata_filter.to_sql(events.c.metadata, self.dialect_name)
            for metadata_filter in metadata_filters
        ]

        if event_filter.customer_id is not None:
            self._add_customer(where)
        return where, _filter_parameters(event_filter, event_name)

    async def _add_backfill(self, event_filter: EventFilter, where: EventConditions) -> None:
        """B3: events of a backfill not reflected are listed only when it is asked for."""
        backfill_id = event_filter.backfill_id
        replaced_by = event_filter.replaced_by_backfill_id
        if backfill_id is None and replaced_by is None:
            where.conditions.append(events.c.counted_from.is_not(None))
            return
        repository = BackfillRepository(self.session, self.business_id)
        if backfill_id is not None:
            if await repository.get(backfill_id) is None:
                raise BadUserInput(
                    UserErrorCode.BACKFILL_NOT_FOUND,
                    "Your business has no backfill with this id.",
                    ("filter", "backfillId"),
                )
            where.conditions.append(events.c.backfill_id == backfill_id)
        if replaced_by is not None:
            where.conditions.append(repository.replacement_of(replaced_by))

    def _add_customer(self, where: EventConditions) -> None:
        """Q4: events sent with the customer's id, and those sent with its externalId.

        Both are read by the page's own statement (subqueries of this business's
        customers, run once), not by a lookup of their own: one round trip fewer. For
        another business's customer, or none at all, both subqueries are NULL and match
        no events (T2), not an error.
        """
        customer_id = _parameter("customer_id", customers.c.id)
        customer = self.readable_by_parameter(customers, customers.c.id, lookup=True).where(
            customers.c.id == customer_id
        )
        external_id = (
            self.readable_by_parameter(customers, customers.c.external_id, lookup=True)
            .where(customers.c.id == customer_id)
            .scalar_subquery()
        )
        where.branches += [
            events.c.customer_id == customer.scalar_subquery(),
            events.c.external_customer_id == external_id,
        ]


def _columns(json_fields: JsonFields | None) -> tuple[sa.ColumnElement[Any], ...]:
    """What a listing selects: the keyset and each event's JSON object, or every column."""
    if json_fields is None:
        return ()
    return (*KEYSET_COLUMNS, event_json(json_fields).label("node"))


def _check_filter(event_filter: EventFilter) -> None:
    """The checks of Q4 that need no lookup, before any statement."""
    _check_lengths(event_filter)
    _check_time_range(event_filter)
    if event_filter.customer_id is not None and not is_customer_id(event_filter.customer_id):
        raise BadUserInput(
            UserErrorCode.CUSTOMER_NOT_FOUND, NOT_A_CUSTOMER_ID, ("filter", "customerId")
        )


def _json_text(row: Any) -> str:
    text: str = row_value(row, "node")
    return text


def events_sent_by(customer: CustomerRecord) -> list[sa.ColumnElement[bool]]:
    """Q4: the events sent with the customer's id, and those sent with its externalId.

    Disjoint, since an event is sent with exactly one of the two (I4); one holds.
    """
    by_id = events.c.customer_id == customer.id
    if customer.external_id is None:
        return [by_id]
    return [by_id, events.c.external_customer_id == customer.external_id]


def _check_lengths(event_filter: EventFilter) -> None:
    """Every string of the filter within its bound, before any of them is looked up."""
    references = UserErrorCode.CUSTOMER_REFERENCE_INVALID
    refuse(
        too_long(
            event_filter.customer_id, MAX_SERVER_ID_LENGTH, ("filter", "customerId"), references
        )
        + too_long(
            event_filter.external_customer_id,
            MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
            ("filter", "externalCustomerId"),
            references,
        )
        + too_long(
            event_filter.event_name,
            MAX_EVENT_NAME_LENGTH,
            ("filter", "eventName"),
            UserErrorCode.EVENT_NAME_INVALID,
        )
        + each_too_long(
            event_filter.event_ids,
            MAX_EVENT_ID_LENGTH,
            ("filter", "eventIds"),
            UserErrorCode.EVENT_ID_INVALID,
        )
        + too_long(
            event_filter.meter_id,
            MAX_SERVER_ID_LENGTH,
            ("filter", "meterId"),
            UserErrorCode.INVALID_INPUT,
        )
        + too_long(
            event_filter.backfill_id,
            MAX_SERVER_ID_LENGTH,
            ("filter", "backfillId"),
            UserErrorCode.INVALID_INPUT,
        )
    )


def _check_time_range(event_filter: EventFilter) -> None:
    """[start, end) must hold some time: an empty range is a mistake, not an empty list."""
    start, end = event_filter.start, event_filter.end
    if start is not None and end is not None and not start < end:
        raise BadUserInput(
            UserErrorCode.TIME_RANGE_INVALID,
            "start must be earlier than end (start is inclusive, end exclusive).",
            ("filter", "end"),
        )


def _checked_event_ids(event_filter: EventFilter) -> tuple[str, ...]:
    event_ids = event_filter.event_ids or ()
    if not 1 <= len(event_ids) <= MAX_EVENT_IDS:
        raise BadUserInput(
            UserErrorCode.INVALID_INPUT,
            f"eventIds must hold 1 to {MAX_EVENT_IDS} eventIds, not {len(event_ids)}.",
            ("filter", "eventIds"),
        )
    return event_ids
