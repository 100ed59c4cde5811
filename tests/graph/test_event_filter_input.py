"""events(filter:) is built straight from graphql-core's coerced input
(graph.types.event_filter_input), and must give what Strawberry's own conversion gives."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from graphql import GraphQLInputObjectType
from graphql.utilities import coerce_input_value
from hypothesis import given, settings
from hypothesis import strategies as st
from strawberry.types import get_object_definition
from strawberry.types.arguments import InputContext, convert_argument

from db.event_filter import EventFilter
from graph.schema import build_schema
from graph.types.event_filter_input import PLAIN_FIELDS, EventFilterInput

SCHEMA = build_schema()
FILTER_TYPE = cast(GraphQLInputObjectType, SCHEMA._schema.get_type("EventFilter"))
# Strawberry's registry of scalars and its config: what it converts arguments with.
SCALARS = SCHEMA.schema_converter.scalar_registry


@contextmanager
def strawberrys_own_conversion() -> Iterator[None]:
    """Strawberry converting EventFilter field by field, as without graph's builder."""
    definition = get_object_definition(EventFilterInput, strict=True)
    builder, definition.from_input = definition.from_input, None
    try:
        yield
    finally:
        definition.from_input = builder


def both_ways(raw: dict[str, Any]) -> tuple[EventFilter, EventFilter]:
    coerced = coerce_input_value(raw, FILTER_TYPE)
    built = convert_argument(coerced, EventFilterInput, SCALARS, SCHEMA.config, path=("filter",))
    with strawberrys_own_conversion():
        generic = convert_argument(
            coerced, EventFilterInput, SCALARS, SCHEMA.config, path=("filter",)
        )
    assert isinstance(built, EventFilterInput)
    assert isinstance(generic, EventFilterInput)
    return built.to_domain(), generic.to_domain()


METADATA = {
    "conjunction": "OR",
    "clauses": [
        {"key": "tokens", "operator": "GREATER_THAN", "value": 10},
        {"key": "model", "operator": "CONTAINS", "value": "large"},
    ],
    "groups": [{"clauses": [{"key": "cached", "operator": "EQUALS", "value": False}]}],
}

texts = st.one_of(st.none(), st.text(max_size=12))
instants = st.one_of(
    st.none(),
    # Hypothesis takes naive bounds, in the zone of `timezones`.
    st.datetimes(
        min_value=datetime(1970, 1, 1),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ).map(lambda moment: moment.isoformat()),
)


@settings(max_examples=200, deadline=None)
@given(
    customer_id=texts,
    external_customer_id=texts,
    event_name=texts,
    event_ids=st.one_of(st.none(), st.lists(st.text(max_size=8), max_size=4)),
    meter_id=texts,
    start=instants,
    end=instants,
    include_deprecated=st.one_of(st.none(), st.booleans()),
    backfill_id=texts,
    metadata=st.sampled_from([None, METADATA, {}]),
)
def test_the_filter_is_what_strawberry_would_build(**fields: Any) -> None:
    names = dict(PLAIN_FIELDS) | {
        "event_ids": "eventIds",
        "include_deprecated": "includeDeprecated",
        "metadata": "metadata",
    }
    # A field left out, or sent as null (includeDeprecated is non-null: left out instead).
    raw = {
        names[name]: value
        for name, value in fields.items()
        if value is not None or (name != "include_deprecated" and len(name) % 2)
    }
    built, generic = both_ways(raw)
    assert built == generic


def test_every_field_of_the_filter_is_built() -> None:
    definition = get_object_definition(EventFilterInput, strict=True)
    coerced = coerce_input_value({}, FILTER_TYPE)
    context = InputContext(info=None, config=SCHEMA.config, scalar_registry=SCALARS, path=())
    assert definition.from_input is not None
    built = definition.from_input(EventFilterInput, coerced, context)
    assert set(vars(built)) == {field.python_name for field in definition.fields}
