"""schema.graphql is the SDL of the code (SPEC §12) and carries every fixed name."""

from pathlib import Path

from db.errors import UserErrorCode
from graph.schema import build_schema

SCHEMA_FILE = Path(__file__).parents[2] / "schema.graphql"


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == build_schema().as_str() + "\n", (
        "schema.graphql is stale: run `usage-events export-schema` (or `make schema`)."
    )


def test_user_error_code_enum_has_every_code_of_the_spec() -> None:
    spec_codes = [
        "EMPTY_BATCH",
        "BATCH_TOO_LARGE",
        "EVENT_ID_INVALID",
        "EVENT_NAME_INVALID",
        "CUSTOMER_REFERENCE_INVALID",
        "CUSTOMER_NOT_FOUND",
        "TIMESTAMP_TOO_OLD",
        "TIMESTAMP_TOO_FAR_IN_FUTURE",
        "METADATA_INVALID",
        "METADATA_TOO_MANY_KEYS",
        "METADATA_KEY_INVALID",
        "METADATA_VALUE_TOO_LONG",
        "METADATA_VALUE_INVALID",
        "DUPLICATE_EVENT_ID_IN_BATCH",
        "EVENT_DEPRECATED",
        "EVENT_NOT_FOUND",
        "TIMESTAMP_MISMATCH",
        "CUSTOMER_MISMATCH",
        "CORRECTION_LIMIT_EXCEEDED",
        "METER_NOT_FOUND",
        "EVENT_NAME_MISMATCH",
        "FILTER_INVALID",
        "AGGREGATION_INVALID",
        "EXTERNAL_ID_TAKEN",
        "INVALID_CURSOR",
        "PAGE_SIZE_INVALID",
        "INVALID_INPUT",
        "TIME_RANGE_INVALID",
        "TIME_ZONE_INVALID",
        "GROUP_BY_INVALID",
        "USAGE_RESULT_TOO_LARGE",
        "BACKFILL_NOT_FOUND",
        "BACKFILL_NOT_PENDING",
        "BACKFILL_CONFLICT",
        "TIMESTAMP_OUTSIDE_BACKFILL",
    ]
    # Codes added beyond SPEC §8, each for a bound the spec leaves open.
    added_codes = ["REASON_TOO_LONG"]
    assert [code.value for code in UserErrorCode if code.value not in added_codes] == spec_codes
    assert {code.value for code in UserErrorCode} == {*spec_codes, *added_codes}
    sdl = build_schema().as_str()
    assert all(f"  {code}\n" in sdl for code in spec_codes + added_codes)


def test_spec_names_of_the_foundation_are_in_the_schema() -> None:
    sdl = build_schema().as_str()
    for line in [
        "ingestEvents(input: IngestEventsInput!): IngestEventsPayload!",
        "createCustomer(input: CreateCustomerInput!): CreateCustomerPayload!",
        "event(eventId: String!): Event",
        "node(id: ID!): Node",
        "viewer: Business!",
        "customer(id: ID!): Customer",
        "type Event implements Node",
        "type Customer implements Node",
        "type Business implements Node",
        "revisions: [EventRevision!]!",
        "userErrors: [UserError!]!",
        "scalar DateTime",
        "scalar JSON",
    ]:
        assert line in sdl, line
