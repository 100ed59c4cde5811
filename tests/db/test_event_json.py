"""The JSON objects PostgreSQL writes for events (db.event_json): what may go into the SQL."""

import pytest

from db.event_json import EVENT_JSON_VALUES, MAX_JSON_KEYS, event_json
from db.records import EventRecord


def test_keys_and_constants_must_be_graphql_names() -> None:
    # A key or a constant is written into the SQL as a literal: only names are allowed
    for bad in ["a'b", "x y", "1abc", "", "é", "a\nb"]:
        with pytest.raises(ValueError, match="not a GraphQL name"):
            event_json(((bad, "event_id"),))
        with pytest.raises(ValueError, match="not a GraphQL name"):
            event_json((("ok", (bad,)),))


def test_an_object_has_one_to_fifty_distinct_keys() -> None:
    # PostgreSQL takes at most 100 arguments: 50 keys and their values
    event_json(tuple((f"k{index}", "event_id") for index in range(MAX_JSON_KEYS)))
    with pytest.raises(ValueError, match="keys"):
        event_json(tuple((f"k{index}", "event_id") for index in range(MAX_JSON_KEYS + 1)))
    with pytest.raises(ValueError, match="keys"):
        event_json(())
    with pytest.raises(ValueError, match="each key once"):
        event_json((("same", "event_id"), ("same", "timestamp")))


def test_every_value_is_an_attribute_of_the_event_record() -> None:
    # The graph layer maps GraphQL fields to these by the record's attribute names
    assert set(EVENT_JSON_VALUES) <= set(dir(EventRecord))
