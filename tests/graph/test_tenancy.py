"""T2: a key acts for exactly one business; another business's data does not exist for it."""

import pytest

from tests.support import GraphQLClient, create_customer, event_input, get_event, ingest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_t2_q1_other_business_event_is_null(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    await ingest(api, [event_input("private")])
    stored = await get_event(api, "private")
    assert stored is not None

    assert await get_event(other_api, "private") is None
    data = await other_api.data("query($id: ID!) { node(id: $id) { id } }", {"id": stored["id"]})
    assert data["node"] is None


async def test_t2_node_resolves_own_event(api: GraphQLClient) -> None:
    await ingest(api, [event_input("mine", metadata={"n": 1})])
    stored = await get_event(api, "mine")
    assert stored is not None
    data = await api.data(
        "query($id: ID!) { node(id: $id) { id ... on Event { eventId metadata } } }",
        {"id": stored["id"]},
    )
    assert data["node"] == {"id": stored["id"], "eventId": "mine", "metadata": {"n": 1}}


async def test_t2_other_business_customer_id_is_not_found_on_ingest(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    theirs = await create_customer(other_api, externalId="theirs")
    payload = await ingest(api, [event_input("e1", customer_id=theirs["id"])])
    assert [error["code"] for error in payload["userErrors"]] == ["CUSTOMER_NOT_FOUND"]
    assert payload["ingestedCount"] == 0


async def test_t2_event_customer_resolves_within_the_business_only(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    await create_customer(other_api, externalId="shared-external-id")
    await ingest(api, [event_input("e1", external_customer_id="shared-external-id")])
    stored = await get_event(api, "e1")
    assert stored is not None
    assert stored["customer"] is None
