"""Customers over HTTP (SPEC §6, Q3 cursors, T2 tenancy), on SQLite and PostgreSQL."""

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from db.database import Database
from db.pagination import Cursors
from db.repositories.customers import CUSTOMER_KEYSET
from tests.support import (
    CREATE_CUSTOMER,
    GraphQLClient,
    count_rows,
    create_customer,
    now_utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

CUSTOMER_FIELDS = "id externalId name email createdAt"

GET_CUSTOMER = f"query Get($id: ID!) {{ customer(id: $id) {{ {CUSTOMER_FIELDS} }} }}"

GET_NODE = f"""
query Node($id: ID!) {{
  node(id: $id) {{
    __typename id
    ... on Customer {{ {CUSTOMER_FIELDS} }}
    ... on Business {{ businessName: name }}
  }}
}}
"""

LIST_CUSTOMERS = f"""
query List($filter: CustomerFilter, $first: Int, $after: String, $last: Int, $before: String) {{
  customers(filter: $filter, first: $first, after: $after, last: $last, before: $before) {{
    edges {{ cursor node {{ {CUSTOMER_FIELDS} }} }}
    nodes {{ {CUSTOMER_FIELDS} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    totalCount
  }}
}}
"""

# A well-formed customer id that no business has.
UNKNOWN_CUSTOMER_ID = "cus_01ZZZZZZZZZZZZZZZZZZZZZZZZ"


async def create_payload(api: GraphQLClient, **fields: Any) -> dict[str, Any]:
    data = await api.data(CREATE_CUSTOMER, {"input": fields})
    payload: dict[str, Any] = data["createCustomer"]
    return payload


async def list_customers(api: GraphQLClient, **arguments: Any) -> dict[str, Any]:
    data = await api.data(LIST_CUSTOMERS, arguments)
    connection: dict[str, Any] = data["customers"]
    # `nodes` is a shortcut for the edges' nodes, in the same order.
    assert connection["nodes"] == [edge["node"] for edge in connection["edges"]]
    cursors = [edge["cursor"] for edge in connection["edges"]]
    assert connection["pageInfo"]["startCursor"] == (cursors[0] if cursors else None)
    assert connection["pageInfo"]["endCursor"] == (cursors[-1] if cursors else None)
    return connection


async def make_customers(api: GraphQLClient, count: int) -> list[str]:
    """`count` customers, created one after the other; their ids in creation order."""
    return [
        (await create_customer(api, externalId=f"c-{index:02}", name=f"Customer {index}"))["id"]
        for index in range(count)
    ]


async def make_customers_named(api: GraphQLClient, external_ids: list[str]) -> list[str]:
    return [(await create_customer(api, externalId=name))["id"] for name in external_ids]


def ids_of(connection: dict[str, Any]) -> list[str]:
    return [node["id"] for node in connection["nodes"]]


def bad_user_input(response: httpx.Response) -> str:
    """The reason of the one BAD_USER_INPUT error of a response, which has no data."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("data") is None
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["path"] == ["customers"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert set(error["extensions"]) == {"code", "reason"}
    assert error["message"]
    reason: str = error["extensions"]["reason"]
    return reason


# createCustomer


async def test_create_customer_returns_the_new_customer(
    api: GraphQLClient, database: Database
) -> None:
    before = now_utc()
    payload = await create_payload(
        api, externalId="acme", name="Acme Corp", email="billing@acme.test"
    )
    after = now_utc()

    assert payload["userErrors"] == []
    customer = payload["customer"]
    assert customer["id"].startswith("cus_")
    assert len(customer["id"]) == len("cus_") + 26
    assert customer["externalId"] == "acme"
    assert customer["name"] == "Acme Corp"
    assert customer["email"] == "billing@acme.test"
    assert customer["createdAt"].endswith("Z")
    created_at = datetime.fromisoformat(customer["createdAt"])
    assert before - timedelta(seconds=1) <= created_at <= after + timedelta(seconds=1)
    assert await count_rows(database, "customers") == 1


async def test_create_customer_with_no_fields_at_all(api: GraphQLClient) -> None:
    payload = await create_payload(api)
    assert payload["userErrors"] == []
    customer = payload["customer"]
    assert customer["id"].startswith("cus_")
    assert (customer["externalId"], customer["name"], customer["email"]) == (None, None, None)


async def test_created_customer_reads_back_with_the_same_fields(api: GraphQLClient) -> None:
    created = await create_customer(api, externalId="acme", name="Acme", email="a@acme.test")
    data = await api.data(GET_CUSTOMER, {"id": created["id"]})
    assert data["customer"] == created


async def test_external_id_is_unique_per_business(api: GraphQLClient, database: Database) -> None:
    first = await create_customer(api, externalId="acme", name="First")

    payload = await create_payload(api, externalId="acme", name="Second")

    assert payload["customer"] is None
    assert payload["userErrors"] == [
        {
            "code": "EXTERNAL_ID_TAKEN",
            "message": "Another customer of your business already has this externalId.",
            "field": ["externalId"],
            "eventId": None,
        }
    ]
    assert await count_rows(database, "customers") == 1
    data = await api.data(GET_CUSTOMER, {"id": first["id"]})
    assert data["customer"]["name"] == "First"


async def test_same_external_id_in_another_business_is_fine(
    api: GraphQLClient, other_api: GraphQLClient, database: Database
) -> None:
    mine = await create_customer(api, externalId="acme")
    theirs = await create_customer(other_api, externalId="acme")
    assert mine["id"] != theirs["id"]
    assert theirs["externalId"] == "acme"
    assert await count_rows(database, "customers") == 2


async def test_customers_without_external_id_do_not_collide(
    api: GraphQLClient, database: Database
) -> None:
    created = [await create_customer(api, name=f"Anonymous {index}") for index in range(3)]
    assert len({customer["id"] for customer in created}) == 3
    assert all(customer["externalId"] is None for customer in created)
    assert await count_rows(database, "customers") == 3


async def test_refused_create_customer_leaves_nothing_behind(
    api: GraphQLClient, database: Database
) -> None:
    await create_customer(api, externalId="acme")
    assert (await create_payload(api, externalId="acme"))["userErrors"]
    # The failed request left nothing behind that blocks an unrelated externalId.
    created = await create_customer(api, externalId="globex")
    assert created["externalId"] == "globex"
    assert await count_rows(database, "customers") == 2


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"email": "not-an-email"}, ["email"]),
        ({"email": "@acme.test"}, ["email"]),
        ({"email": "billing@"}, ["email"]),
        ({"email": "bill ing@acme.test"}, ["email"]),
        ({"email": "b" * 311 + "@acme.test"}, ["email"]),
        ({"externalId": ""}, ["externalId"]),
        ({"externalId": "x" * 256}, ["externalId"]),
        ({"name": "n" * 256}, ["name"]),
    ],
)
async def test_invalid_customer_input_is_rejected_with_its_path(
    api: GraphQLClient, database: Database, fields: dict[str, str], path: list[str]
) -> None:
    payload = await create_payload(api, **fields)
    assert payload["customer"] is None
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [
        ("INVALID_INPUT", path)
    ]
    assert payload["userErrors"][0]["message"]
    assert payload["userErrors"][0]["eventId"] is None
    assert await count_rows(database, "customers") == 0


async def test_every_invalid_customer_field_is_reported(
    api: GraphQLClient, database: Database
) -> None:
    payload = await create_payload(api, externalId="", name="n" * 256, email="nope")
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [
        ("INVALID_INPUT", ["externalId"]),
        ("INVALID_INPUT", ["name"]),
        ("INVALID_INPUT", ["email"]),
    ]
    assert await count_rows(database, "customers") == 0


async def test_customer_fields_at_their_maximum_length_are_accepted(api: GraphQLClient) -> None:
    email = "b" * 310 + "@acme.test"
    assert len(email) == 320
    customer = await create_customer(api, externalId="x" * 255, name="n" * 255, email=email)
    assert customer["externalId"] == "x" * 255
    assert customer["name"] == "n" * 255
    assert customer["email"] == email


# customer(id:) and node(id:)


async def test_customer_and_node_return_the_customer(api: GraphQLClient) -> None:
    created = await create_customer(api, externalId="acme", name="Acme", email="a@acme.test")

    by_customer = await api.data(GET_CUSTOMER, {"id": created["id"]})
    by_node = await api.data(GET_NODE, {"id": created["id"]})

    assert by_customer["customer"] == created
    assert by_node["node"] == {"__typename": "Customer", **created}


async def test_t2_another_business_customer_does_not_exist(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    theirs = await create_customer(other_api, externalId="globex-customer")
    assert (await other_api.data(GET_CUSTOMER, {"id": theirs["id"]}))["customer"] == theirs

    assert (await api.data(GET_CUSTOMER, {"id": theirs["id"]}))["customer"] is None
    assert (await api.data(GET_NODE, {"id": theirs["id"]}))["node"] is None


@pytest.mark.parametrize(
    "customer_id",
    [
        UNKNOWN_CUSTOMER_ID,
        "garbage",
        "",
        "cus_",
        "CUS_01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        "evt_01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        "mtr_01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        "key_01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        # Longer than any id of ours (40): INVALID_INPUT, see tests/graph/test_input_bounds.py.
        "cus_" + "x" * 36,
        "cus_'; DROP TABLE customers; --",
    ],
)
async def test_unknown_or_garbage_customer_ids_return_null(
    api: GraphQLClient, database: Database, customer_id: str
) -> None:
    await create_customer(api, externalId="acme")
    assert (await api.data(GET_CUSTOMER, {"id": customer_id}))["customer"] is None
    assert (await api.data(GET_NODE, {"id": customer_id}))["node"] is None
    assert await count_rows(database, "customers") == 1


async def test_customer_id_is_exact(api: GraphQLClient) -> None:
    created = await create_customer(api)
    customer_id: str = created["id"]
    for variant in (customer_id.lower(), customer_id + " ", " " + customer_id, customer_id[:-1]):
        assert (await api.data(GET_CUSTOMER, {"id": variant}))["customer"] is None


# viewer and node(id:) for businesses


async def test_viewer_is_the_business_of_the_api_key(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    mine = await api.data("{ viewer { id name } }")
    theirs = await other_api.data("{ viewer { id name } }")
    assert mine["viewer"] == {"id": api.tenant.business_id, "name": "Acme Analytics"}
    assert theirs["viewer"] == {"id": other_api.tenant.business_id, "name": "Globex"}


async def test_node_resolves_the_own_business(api: GraphQLClient) -> None:
    data = await api.data(GET_NODE, {"id": api.tenant.business_id})
    assert data["node"] == {
        "__typename": "Business",
        "id": api.tenant.business_id,
        "businessName": "Acme Analytics",
    }


async def test_t2_node_of_another_business_is_null(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    assert (await api.data(GET_NODE, {"id": other_api.tenant.business_id}))["node"] is None
    assert (await api.data(GET_NODE, {"id": "bus_01ZZZZZZZZZZZZZZZZZZZZZZZZ"}))["node"] is None


# customers — the connection


async def test_customers_of_a_business_without_any(api: GraphQLClient) -> None:
    connection = await list_customers(api)
    assert connection == {
        "edges": [],
        "nodes": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
        "totalCount": 0,
    }


async def test_customers_default_page_holds_every_customer_oldest_first(
    api: GraphQLClient,
) -> None:
    created = await make_customers(api, 23)
    connection = await list_customers(api)
    assert ids_of(connection) == created
    assert connection["totalCount"] == 23
    assert connection["pageInfo"]["hasNextPage"] is False
    assert connection["pageInfo"]["hasPreviousPage"] is False
    assert [node["externalId"] for node in connection["nodes"]] == [
        f"c-{index:02}" for index in range(23)
    ]


async def test_q3_customers_forward_walk_sees_each_customer_once_in_creation_order(
    api: GraphQLClient,
) -> None:
    created = await make_customers(api, 23)

    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        connection = await list_customers(api, first=5, after=after)
        pages.append(connection)
        seen += ids_of(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        assert len(pages) < 10, "the walk does not end"

    assert seen == created
    assert [len(page["edges"]) for page in pages] == [5, 5, 5, 5, 3]
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [True] * 4 + [False]
    assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [False] + [True] * 4
    assert all(page["totalCount"] == 23 for page in pages)


async def test_q3_customers_backward_walk_sees_each_customer_once_in_reverse(
    api: GraphQLClient,
) -> None:
    created = await make_customers(api, 23)

    pages: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        connection = await list_customers(api, last=5, before=before)
        pages.append(connection)
        if not connection["pageInfo"]["hasPreviousPage"]:
            break
        before = connection["pageInfo"]["startCursor"]
        assert len(pages) < 10, "the walk does not end"

    # Each page is still in the connection's order (oldest first); the pages come newest first.
    assert [ids_of(page) for page in pages] == [
        created[18:23],
        created[13:18],
        created[8:13],
        created[3:8],
        created[0:3],
    ]
    assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [True] * 4 + [False]
    # Without `before` nothing can follow the last page; with it, the newer customers do.
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [False] + [True] * 4
    assert all(page["totalCount"] == 23 for page in pages)


async def test_q3_customers_first_after_a_cursor_starts_right_after_it(
    api: GraphQLClient,
) -> None:
    created = await make_customers(api, 8)
    everyone = await list_customers(api)
    cursor_of_third = everyone["edges"][2]["cursor"]

    after_third = await list_customers(api, first=3, after=cursor_of_third)
    before_third = await list_customers(api, last=10, before=cursor_of_third)
    between = await list_customers(
        api, first=10, after=cursor_of_third, before=everyone["edges"][6]["cursor"]
    )

    assert ids_of(after_third) == created[3:6]
    assert ids_of(before_third) == created[0:2]
    assert before_third["pageInfo"]["hasPreviousPage"] is False
    assert ids_of(between) == created[3:6]


async def test_q3_customers_after_the_last_cursor_is_an_empty_page(api: GraphQLClient) -> None:
    await make_customers(api, 3)
    everyone = await list_customers(api)
    past_the_end = await list_customers(api, first=5, after=everyone["pageInfo"]["endCursor"])
    assert past_the_end["edges"] == []
    assert past_the_end["pageInfo"]["hasNextPage"] is False
    assert past_the_end["pageInfo"]["hasPreviousPage"] is True
    assert past_the_end["totalCount"] == 3


async def test_q3_customer_cursors_survive_new_customers(api: GraphQLClient) -> None:
    created = await make_customers(api, 4)
    first_page = await list_customers(api, first=2)
    created += await make_customers_named(api, ["late-1", "late-2"])

    rest = await list_customers(api, first=10, after=first_page["pageInfo"]["endCursor"])

    assert ids_of(first_page) + ids_of(rest) == created


async def test_q3_page_size_of_100_is_accepted(api: GraphQLClient) -> None:
    created = await make_customers(api, 2)
    assert ids_of(await list_customers(api, first=100)) == created
    assert ids_of(await list_customers(api, last=100)) == created


async def test_q3_first_and_last_together_are_refused(api: GraphQLClient) -> None:
    await make_customers(api, 2)
    response = await api.post(LIST_CUSTOMERS, {"first": 5, "last": 5})
    assert bad_user_input(response) == "PAGE_SIZE_INVALID"
    assert response.json()["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "reason": "PAGE_SIZE_INVALID",
    }


@pytest.mark.parametrize(
    "arguments",
    [{"first": 101}, {"last": 101}, {"first": 0}, {"last": 0}, {"first": -1}, {"last": -5}],
)
async def test_q3_page_size_outside_1_to_100_is_refused(
    api: GraphQLClient, arguments: dict[str, int]
) -> None:
    response = await api.post(LIST_CUSTOMERS, arguments)
    assert bad_user_input(response) == "PAGE_SIZE_INVALID"


@pytest.mark.parametrize("argument", ["after", "before"])
@pytest.mark.parametrize("cursor", ["garbage", "", "x" * 600, "WyJjdXN0b21lcnMiXQ"])
async def test_q3_malformed_cursor_is_refused(
    api: GraphQLClient, argument: str, cursor: str
) -> None:
    await make_customers(api, 2)
    response = await api.post(LIST_CUSTOMERS, {"first": 5, argument: cursor})
    assert bad_user_input(response) == "INVALID_CURSOR"


@pytest.mark.parametrize("argument", ["after", "before"])
async def test_t2_cursor_of_another_business_is_refused(
    api: GraphQLClient, other_api: GraphQLClient, argument: str
) -> None:
    await make_customers(api, 3)
    await make_customers(other_api, 3)
    theirs = await list_customers(other_api, first=1)
    their_cursor = theirs["pageInfo"]["endCursor"]
    assert their_cursor is not None

    response = await api.post(LIST_CUSTOMERS, {"first": 5, argument: their_cursor})

    assert bad_user_input(response) == "INVALID_CURSOR"
    # The cursor still works for the business it was issued to.
    assert len((await list_customers(other_api, first=5, after=their_cursor))["edges"]) == 2


async def test_t2_another_business_never_sees_these_customers(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    created = await make_customers(api, 5)

    theirs = await list_customers(other_api)

    assert theirs["edges"] == []
    assert theirs["totalCount"] == 0
    assert theirs["pageInfo"]["hasNextPage"] is False
    mine = await list_customers(api)
    assert ids_of(mine) == created
    assert mine["totalCount"] == 5


async def test_t2_connections_of_two_businesses_stay_apart(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    mine: list[str] = []
    theirs: list[str] = []
    for index in range(4):
        mine += await make_customers_named(api, [f"shared-{index}"])
        theirs += await make_customers_named(other_api, [f"shared-{index}"])

    assert ids_of(await list_customers(api, first=10)) == mine
    assert ids_of(await list_customers(other_api, first=10)) == theirs
    assert (await list_customers(api))["totalCount"] == 4


# customers(filter: {externalId})


async def test_a_customer_is_found_by_its_own_external_id(api: GraphQLClient) -> None:
    # Given customers with and without external ids
    await make_customers_named(api, ["globex", "acme-eu"])
    acme = await create_customer(api, externalId="acme", name="Acme")
    await create_customer(api, name="No external id")

    # When they are filtered by one external id
    connection = await list_customers(api, filter={"externalId": "acme"})

    # Then only the customer with exactly that id comes back
    assert ids_of(connection) == [acme["id"]]
    assert connection["totalCount"] == 1
    assert connection["pageInfo"]["hasNextPage"] is False


async def test_external_id_filter_is_exact(api: GraphQLClient) -> None:
    await make_customers_named(api, ["acme"])

    for near_miss in ("ACME", "acm", "acme ", ""):
        connection = await list_customers(api, filter={"externalId": near_miss})
        assert connection["nodes"] == [], near_miss
        assert connection["totalCount"] == 0


async def test_an_empty_or_null_filter_lists_every_customer(api: GraphQLClient) -> None:
    created = await make_customers(api, 3)

    assert ids_of(await list_customers(api, filter={})) == created
    assert ids_of(await list_customers(api, filter={"externalId": None})) == created
    assert ids_of(await list_customers(api, filter=None)) == created


async def test_external_id_filter_pages_like_the_whole_list(api: GraphQLClient) -> None:
    [acme] = await make_customers_named(api, ["acme"])
    first = await list_customers(api, filter={"externalId": "acme"}, first=1)

    after = await list_customers(
        api, filter={"externalId": "acme"}, after=first["pageInfo"]["endCursor"]
    )
    before = await list_customers(
        api, filter={"externalId": "acme"}, last=1, before=first["pageInfo"]["endCursor"]
    )

    assert ids_of(first) == [acme]
    assert after["nodes"] == []
    assert before["nodes"] == []


async def test_t2_external_id_filter_finds_only_the_own_customer(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    await create_customer(other_api, externalId="acme")
    await create_customer(other_api, externalId="theirs-only")
    mine = await create_customer(api, externalId="acme")

    assert ids_of(await list_customers(api, filter={"externalId": "acme"})) == [mine["id"]]
    only_theirs = await list_customers(api, filter={"externalId": "theirs-only"})
    assert only_theirs["nodes"] == []
    assert only_theirs["totalCount"] == 0


# U+0000 and out-of-range cursors: refused alike on both databases.


async def test_refused_arguments_still_answer_data_null(api: GraphQLClient) -> None:
    response = await api.post(LIST_CUSTOMERS, {"first": 5, "last": 5})
    body = response.json()
    assert body["errors"][0]["extensions"]["reason"] == "PAGE_SIZE_INVALID"
    assert "data" in body
    assert body["data"] is None


@pytest.mark.parametrize("customer_id", ["cus_\x00", "cus_01ZZZZZZZZZZZZZZZZZZZZZZZ\x00"])
async def test_customer_id_with_a_nul_character_is_refused(
    api: GraphQLClient, customer_id: str
) -> None:
    for query in (GET_CUSTOMER, GET_NODE):
        response = await api.post(query, {"id": customer_id})
        assert response.status_code == 400
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "variables.id" in error["message"]


@pytest.mark.parametrize("sealed", [True, False])
async def test_cursor_with_a_nul_character_is_invalid(api: GraphQLClient, sealed: bool) -> None:
    await make_customers(api, 2)
    # Only the server seals cursors; one sealed with the business's own key (as a leaked key
    # would allow) and holding a NUL is refused all the same, before the database sees it.
    forged = (
        Cursors(api.tenant.business_id, api.tenant.cursor_key).encode(
            CUSTOMER_KEYSET, ("cus_\x00",)
        )
        if sealed
        else raw_customer_cursor(api.tenant.business_id, "cus_\x00")
    )

    response = await api.post(LIST_CUSTOMERS, {"first": 5, "after": forged})

    assert bad_user_input(response) == "INVALID_CURSOR"


def raw_customer_cursor(business_id: str, position: str) -> str:
    """A cursor as they were spelled before they were sealed: base64url JSON."""
    payload = json.dumps(["customers", business_id, position]).encode()
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


@pytest.mark.parametrize("field", ["externalId", "name", "email"])
async def test_customer_fields_with_a_nul_character_are_refused(
    api: GraphQLClient, database: Database, field: str
) -> None:
    response = await api.post(CREATE_CUSTOMER, {"input": {field: "a\x00@acme.test"}})
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"variables.input.{field}" in error["message"]
    assert await count_rows(database, "customers") == 0
