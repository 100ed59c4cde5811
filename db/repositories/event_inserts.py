"""Writing a batch of new events and their first revisions: one statement per database.

A 1000-event batch is the hot path of the service. SQLAlchemy's generic executemany
builds and sends a thousand rows of bound parameters twice (events, then revisions); here
each database receives the batch as a handful of arrays (PostgreSQL, `unnest`) or one
JSON document (SQLite, `json_each`) and writes both tables from it. Either way the
unique index decides what is new: `ON CONFLICT (business_id, event_id) DO NOTHING`
(I8, I11), and only the rows actually inserted come back. The statements are hand-written,
so the scoped repository binds their `:business_id` (BusinessScopedRepository.execute_text).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP

from db.json_text import dump_json
from db.repositories.scoped import BusinessScopedRepository

# The sequence behind events.sequence on PostgreSQL (the BIGSERIAL default name).
EVENTS_SEQUENCE_NAME = "events_sequence_seq"


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    event_id: str
    customer_id: str | None
    external_customer_id: str | None
    event_name: str
    timestamp: datetime
    metadata: dict[str, Any]


_POSTGRES_INSERT = sa.text(
    """
    WITH new_events AS (
        INSERT INTO events (sequence, id, business_id, event_id, customer_id,
                            external_customer_id, event_name, "timestamp", metadata,
                            ingested_at, revision, backfill_id, counted_from)
        SELECT batch.sequence, batch.id, :business_id, batch.event_id, batch.customer_id,
               batch.external_customer_id, batch.event_name, batch.timestamp,
               CAST(batch.metadata AS JSONB), :now, 1, :backfill_id, :counted_from
        FROM unnest(:sequences, :ids, :event_ids, :customer_ids, :external_customer_ids,
                    :event_names, :timestamps, :metadata)
             AS batch(sequence, id, event_id, customer_id, external_customer_id, event_name,
                      timestamp, metadata)
        ON CONFLICT (business_id, event_id) DO NOTHING
        RETURNING sequence, event_id, event_name, "timestamp", customer_id,
                  external_customer_id, metadata
    ), first_revisions AS (
        INSERT INTO event_revisions (event_sequence, revision, event_name, "timestamp",
                                     customer_id, external_customer_id, metadata, created_at)
        SELECT sequence, 1, event_name, "timestamp", customer_id, external_customer_id,
               metadata, :now
        FROM new_events
    )
    SELECT event_id, sequence FROM new_events
    """
).bindparams(
    sa.bindparam("sequences", type_=ARRAY(sa.BigInteger())),
    sa.bindparam("ids", type_=ARRAY(sa.Text())),
    sa.bindparam("event_ids", type_=ARRAY(sa.Text())),
    sa.bindparam("customer_ids", type_=ARRAY(sa.Text())),
    sa.bindparam("external_customer_ids", type_=ARRAY(sa.Text())),
    sa.bindparam("event_names", type_=ARRAY(sa.Text())),
    sa.bindparam("timestamps", type_=ARRAY(TIMESTAMP(timezone=True))),
    sa.bindparam("metadata", type_=ARRAY(sa.Text())),
    sa.bindparam("now", type_=TIMESTAMP(timezone=True)),
    sa.bindparam("backfill_id", type_=sa.Text()),
    sa.bindparam("counted_from", type_=TIMESTAMP(timezone=True)),
)

_SQLITE_INSERT_EVENTS = sa.text(
    """
    INSERT INTO events (id, business_id, event_id, customer_id, external_customer_id,
                        event_name, timestamp, metadata, ingested_at, revision, backfill_id,
                        counted_from)
    SELECT value ->> 0, :business_id, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
           value ->> 5, value -> 6, :now, 1, :backfill_id, :counted_from
    FROM json_each(:batch)
    WHERE true  -- SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT
    ON CONFLICT (business_id, event_id) DO NOTHING
    RETURNING event_id, sequence
    """
)

_SQLITE_INSERT_FIRST_REVISIONS = sa.text(
    """
    INSERT INTO event_revisions (event_sequence, revision, event_name, timestamp,
                                 customer_id, external_customer_id, metadata, created_at)
    SELECT sequence, 1, event_name, timestamp, customer_id, external_customer_id, metadata,
           ingested_at
    FROM events
    -- The unary + keeps the business check off the indexes: SQLite would otherwise read
    -- the whole business through one, rather than each new row by its primary key.
    WHERE sequence IN (SELECT value FROM json_each(:sequences)) AND +business_id = :business_id
    """
)


async def insert_new_events(
    repository: BusinessScopedRepository,
    batch: Sequence[NewEvent],
    now: datetime,
    *,
    backfill_id: str | None = None,
) -> dict[str, int]:
    """Insert the events whose eventId is new; returns eventId → sequence of those.

    Events sent into a backfill are stored with it and count from its close; the others
    count from now (db.tables.Event.counted_from)."""
    marks = {"backfill_id": backfill_id, "counted_from": None if backfill_id else now}
    if repository.dialect_name == "postgresql":
        return await _insert_on_postgresql(repository, batch, now, marks)
    return await _insert_on_sqlite(repository, batch, now, marks)


async def _insert_on_postgresql(
    repository: BusinessScopedRepository,
    batch: Sequence[NewEvent],
    now: datetime,
    marks: dict[str, Any],
) -> dict[str, int]:
    # Two requests inserting overlapping eventIds in different orders would each wait for
    # a unique-index entry the other holds: a deadlock. Inserting in eventId order rules
    # that out, while sequences taken up front in request order keep the request's own
    # order as the insertion order that breaks timestamp ties (Q2).
    sequences = sorted(
        (
            await repository.session.execute(
                sa.select(sa.func.nextval(EVENTS_SEQUENCE_NAME)).select_from(
                    sa.func.generate_series(1, len(batch))
                )
            )
        ).scalars()
    )
    in_lock_order = sorted(zip(sequences, batch, strict=True), key=lambda pair: pair[1].event_id)
    result = await repository.execute_text(
        _POSTGRES_INSERT,
        {
            **marks,
            "now": now,
            "sequences": [sequence for sequence, _ in in_lock_order],
            "ids": [event.id for _, event in in_lock_order],
            "event_ids": [event.event_id for _, event in in_lock_order],
            "customer_ids": [event.customer_id for _, event in in_lock_order],
            "external_customer_ids": [event.external_customer_id for _, event in in_lock_order],
            "event_names": [event.event_name for _, event in in_lock_order],
            "timestamps": [event.timestamp for _, event in in_lock_order],
            "metadata": [dump_json(event.metadata) for _, event in in_lock_order],
        },
    )
    return {row.event_id: row.sequence for row in result}


async def _insert_on_sqlite(
    repository: BusinessScopedRepository,
    batch: Sequence[NewEvent],
    now: datetime,
    marks: dict[str, Any],
) -> dict[str, int]:
    # SQLite takes one writer at a time (BEGIN IMMEDIATE), so request order is lock order.
    # Each metadata document is written by dump_json on its own: ids and names hold no
    # numbers, and text such as "3e5" in an eventId must not send the whole batch down
    # dump_json's slow path.
    document = orjson.dumps(
        [
            [
                event.id,
                event.event_id,
                event.customer_id,
                event.external_customer_id,
                event.event_name,
                sqlite_timestamp(event.timestamp),
                orjson.Fragment(dump_json(event.metadata)),
            ]
            for event in batch
        ]
    ).decode()
    result = await repository.execute_text(
        _SQLITE_INSERT_EVENTS,
        {
            "now": sqlite_timestamp(now),
            "batch": document,
            "backfill_id": marks["backfill_id"],
            "counted_from": marks["counted_from"] and sqlite_timestamp(marks["counted_from"]),
        },
    )
    inserted = {row.event_id: row.sequence for row in result}
    if inserted:
        await repository.execute_text(
            _SQLITE_INSERT_FIRST_REVISIONS,
            {"sequences": orjson.dumps(list(inserted.values())).decode()},
        )
    return inserted


def sqlite_timestamp(moment: datetime) -> str:
    """The text db.column_types.UTCDateTime stores on SQLite: naive UTC, fixed width."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
