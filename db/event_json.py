"""Events as JSON text made by PostgreSQL, spelled as the API spells each value.

A page of events is most of what the API serves, and turning 100 rows into Python
values, then into response values, then into JSON costs several times what reading them
does. For a selection of plain values only, PostgreSQL writes each row's object itself
(`json_build_object`) and the text goes into the response as it is (graph.serialized).

Each value is spelled as the API's own serialization spells it, so a client reads the
same JSON values either way:
- strings and integers as they are stored;
- instants as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, as graph.scalars.serialize_datetime
  writes them (always microseconds, always `Z`);
- `deprecated` as whether the event has a deprecation time (EventRecord.deprecated);
- metadata as the stored `jsonb` document. Its numbers are the digits db.json_text
  stored, which JSON readers read as the same numbers the API's other path prints
  (`1.50` is `1.5`), and its keys are in jsonb's order, which is also the order the
  other path reads them in.

tests/graph/test_serialized_rows.py checks every field against the standard path.
"""

import functools
import re
from typing import Any

import sqlalchemy as sa

from db.tables import events

# A GraphQL name: what a key (a response name) or a type name can be.
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*", re.ASCII)

# PostgreSQL caps a function's arguments at 100: a key and a value each.
MAX_JSON_KEYS = 50

# to_char of the UTC wall time: the format of graph.scalars.serialize_datetime.
_INSTANT_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _instant(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.to_char(sa.func.timezone("UTC", column), _INSTANT_FORMAT)


# EventRecord's attributes that a page may ask for as JSON, each with its SQL value.
EVENT_JSON_VALUES: dict[str, sa.ColumnElement[Any]] = {
    "id": events.c.id,
    "business_id": events.c.business_id,
    "event_id": events.c.event_id,
    "customer_id": events.c.customer_id,
    "external_customer_id": events.c.external_customer_id,
    "event_name": events.c.event_name,
    "timestamp": _instant(events.c.timestamp),
    "metadata": events.c.metadata,
    "ingested_at": _instant(events.c.ingested_at),
    "revision": events.c.revision,
    "deprecated": events.c.deprecated_at.is_not(None),
    "deprecated_at": _instant(events.c.deprecated_at),
    "deprecation_reason": events.c.deprecation_reason,
}

# A constant string in place of an attribute: for `__typename`.
Constant = tuple[str]
# (key, attribute or constant) pairs, in the order of the object's keys.
JsonFields = tuple[tuple[str, str | Constant], ...]


@functools.lru_cache(maxsize=256)
def event_json(fields: JsonFields) -> sa.ColumnElement[str]:
    """The JSON text of one event's object: `(key, attribute)` pairs in their order, an
    attribute being one of EVENT_JSON_VALUES or a 1-tuple holding a constant.

    Keys and constants are GraphQL names (letters, digits, underscores), and are bound
    as parameters: the SQL depends on the attributes asked for, not on the aliases a
    client chose, so new aliases compile nothing new. Built once per selection.
    """
    if not 0 < len(fields) <= MAX_JSON_KEYS:
        raise ValueError(f"1 to {MAX_JSON_KEYS} keys, not {len(fields)}")
    if len({key for key, _ in fields}) != len(fields):
        raise ValueError("each key once")
    arguments: list[Any] = []
    for key, attribute in fields:
        value = (
            _name_literal(attribute[0])
            if isinstance(attribute, tuple)
            else EVENT_JSON_VALUES[attribute]
        )
        arguments += [_name_literal(key), value]
    return sa.cast(sa.func.json_build_object(*arguments), sa.Text)


def _name_literal(name: str) -> sa.ColumnElement[str]:
    if not _GRAPHQL_NAME.fullmatch(name):
        raise ValueError(f"not a GraphQL name: {name[:64]!r}")
    return sa.literal(name, sa.Text)
