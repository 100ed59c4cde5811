"""The one mutation pattern, across every mutation (SPEC §8), on SQLite and PostgreSQL.

Each mutation is refused the same way: its userErrors' `field` paths start at one of its
input's own fields, every other payload field is empty, and nothing is written.
"""

from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from db.database import Database
from tests.support import GraphQLClient, count_rows, create_customer, event_input, ingest

pytestmark = pytest.mark.asyncio(loop_scope="session")

TABLES = [
    "events",
    "event_revisions",
    "event_corrections",
    "customers",
    "meters",
    "backfills",
    "backfill_replacements",
]


@dataclass(frozen=True)
class Refusal:
    """An input that breaks one rule, and the userError and empty payload it must get."""

    mutation: str
    input_type: str
    input: dict[str, Any]
    code: str
    field: list[str]
    # The payload's other fields: a selection of them, and what they must be when refused.
    selection: str
    empty: dict[str, Any]


REFUSALS = [
    Refusal(
        "ingestEvents",
        "IngestEventsInput",
        {"events": [event_input("e2", external_customer_id="acme", metadata={"plan": {}})]},
        "METADATA_VALUE_INVALID",
        ["events", "0", "metadata", "plan"],
        "ingestedCount duplicateCount ingested duplicates",
        {"ingestedCount": 0, "duplicateCount": 0, "ingested": [], "duplicates": []},
    ),
    Refusal(
        "amendEvent",
        "AmendEventInput",
        {"eventId": "e1", "eventName": "api.request", "metadata": {"plan": {}}},
        "METADATA_VALUE_INVALID",
        ["metadata", "plan"],
        "event { id }",
        {"event": None},
    ),
    Refusal(
        "deprecateEvent",
        "DeprecateEventInput",
        {"eventId": "unknown"},
        "EVENT_NOT_FOUND",
        ["eventId"],
        "event { id }",
        {"event": None},
    ),
    Refusal(
        "createCustomer",
        "CreateCustomerInput",
        {"externalId": "acme"},
        "EXTERNAL_ID_TAKEN",
        ["externalId"],
        "customer { id }",
        {"customer": None},
    ),
    Refusal(
        "createMeter",
        "CreateMeterInput",
        {
            "name": "Tokens",
            "eventName": "llm.tokens",
            "aggregation": {"type": "SUM", "key": "tokens"},
            "filter": {"clauses": [{"key": "tokens", "operator": "CONTAINS", "value": 1}]},
        },
        "FILTER_INVALID",
        ["filter", "clauses", "0", "value"],
        "meter { id }",
        {"meter": None},
    ),
    Refusal(
        "archiveMeter",
        "MeterIdInput",
        {"id": "mtr_unknown"},
        "METER_NOT_FOUND",
        ["id"],
        "meter { id }",
        {"meter": None},
    ),
    Refusal(
        "unarchiveMeter",
        "MeterIdInput",
        {"id": "mtr_unknown"},
        "METER_NOT_FOUND",
        ["id"],
        "meter { id }",
        {"meter": None},
    ),
    Refusal(
        "createBackfill",
        "CreateBackfillInput",
        {
            "timeframeStart": "2026-01-02T00:00:00Z",
            "timeframeEnd": "2026-01-01T00:00:00Z",
            "replaceExistingEvents": False,
        },
        "TIME_RANGE_INVALID",
        ["timeframeEnd"],
        "backfill { id }",
        {"backfill": None},
    ),
    Refusal(
        "closeBackfill",
        "BackfillIdInput",
        {"id": "bfl_unknown"},
        "BACKFILL_NOT_FOUND",
        ["id"],
        "backfill { id }",
        {"backfill": None},
    ),
    Refusal(
        "revertBackfill",
        "BackfillIdInput",
        {"id": "bfl_unknown"},
        "BACKFILL_NOT_FOUND",
        ["id"],
        "backfill { id }",
        {"backfill": None},
    ),
]

INPUT_FIELDS = "query($name: String!) { __type(name: $name) { inputFields { name } } }"


@pytest_asyncio.fixture
async def stored(api: GraphQLClient) -> None:
    """A customer `acme` with one event `e1`: what the refusals above refer to."""
    await create_customer(api, externalId="acme")
    assert (await ingest(api, [event_input("e1", external_customer_id="acme")]))["ingested"]


async def row_counts(database: Database) -> dict[str, int]:
    return {table: await count_rows(database, table) for table in TABLES}


async def test_every_mutation_has_a_refusal_below(api: GraphQLClient) -> None:
    data = await api.data("{ __schema { mutationType { fields { name } } } }")
    mutations = {field["name"] for field in data["__schema"]["mutationType"]["fields"]}
    assert mutations == {refusal.mutation for refusal in REFUSALS}


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda refusal: refusal.mutation)
async def test_refused_mutation_names_a_field_of_its_own_input_and_writes_nothing(
    api: GraphQLClient, database: Database, stored: None, refusal: Refusal
) -> None:
    # Given the stored customer and event
    before = await row_counts(database)

    # When the mutation breaks a rule
    document = (
        f"mutation($input: {refusal.input_type}!) {{ {refusal.mutation}(input: $input) "
        f"{{ {refusal.selection} userErrors {{ code field }} }} }}"
    )
    payload = (await api.data(document, {"input": refusal.input}))[refusal.mutation]

    # Then the error's path starts at a field of the input, not at `input`
    assert payload == refusal.empty | {
        "userErrors": [{"code": refusal.code, "field": refusal.field}]
    }
    input_type = (await api.data(INPUT_FIELDS, {"name": refusal.input_type}))["__type"]
    assert refusal.field[0] in {field["name"] for field in input_type["inputFields"]}
    assert await row_counts(database) == before
