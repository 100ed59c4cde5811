"""Test support: tenants, a GraphQL client over HTTP, and small keyword-only factories."""

import logging
import logging.config
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from db.database import Database
from db.pagination import Cursors
from db.repositories.businesses import BusinessRepository


@dataclass(frozen=True)
class Tenant:
    """A business with a live API key, as a test sees it."""

    business_id: str
    key_id: str
    api_key: str
    # What the server seals the business's cursors with (db.pagination.Cursors).
    cursor_key: bytes = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def make_tenant(database: Database, *, name: str = "Test business") -> Tenant:
    async with database.unit_of_work() as session:
        repository = BusinessRepository(session)
        business = await repository.create(name)
        key, secret = await repository.create_api_key(business.id)
    return Tenant(business.id, key.id, secret, business.cursor_key)


class GraphQLClient:
    """Sends GraphQL over HTTP the way a frontend does, as one tenant."""

    def __init__(self, http: httpx.AsyncClient, tenant: Tenant) -> None:
        self.http = http
        self.tenant = tenant

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=self.tenant.headers,
        )

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a response that must have succeeded without errors."""
        response = await self.post(query, variables)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


INGEST = """
mutation Ingest($input: IngestEventsInput!) {
  ingestEvents(input: $input) {
    ingestedCount duplicateCount ingested duplicates
    userErrors { code message field eventId }
  }
}
"""

EVENT_FIELDS = """
  id eventId businessId customerId externalCustomerId eventName timestamp metadata
  ingestedAt deprecated deprecatedAt deprecationReason revision
  customer { id externalId }
  revisions { revision eventName timestamp customerId externalCustomerId metadata createdAt reason }
"""

GET_EVENT = f"query Get($eventId: String!) {{ event(eventId: $eventId) {{ {EVENT_FIELDS} }} }}"

CREATE_CUSTOMER = """
mutation Create($input: CreateCustomerInput!) {
  createCustomer(input: $input) {
    customer { id externalId name email createdAt }
    userErrors { code message field eventId }
  }
}
"""


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def event_input(
    event_id: str,
    *,
    external_customer_id: str | None = "cust-1",
    customer_id: str | None = None,
    event_name: str = "api.request",
    timestamp: str | None = None,
    metadata: Any = None,
    minutes_ago: float | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {"eventId": event_id, "eventName": event_name}
    if customer_id is not None:
        event["customerId"] = customer_id
    if external_customer_id is not None and customer_id is None:
        event["externalCustomerId"] = external_customer_id
    if minutes_ago is not None:
        timestamp = iso(now_utc() - timedelta(minutes=minutes_ago))
    if timestamp is not None:
        event["timestamp"] = timestamp
    if metadata is not None:
        event["metadata"] = metadata
    return event


async def ingest(api: GraphQLClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    data = await api.data(INGEST, {"input": {"events": events}})
    payload: dict[str, Any] = data["ingestEvents"]
    return payload


async def create_customer(api: GraphQLClient, **fields: Any) -> dict[str, Any]:
    data = await api.data(CREATE_CUSTOMER, {"input": fields})
    payload: dict[str, Any] = data["createCustomer"]
    assert payload["userErrors"] == [], payload["userErrors"]
    customer: dict[str, Any] = payload["customer"]
    return customer


async def get_event(api: GraphQLClient, event_id: str) -> dict[str, Any] | None:
    data = await api.data(GET_EVENT, {"eventId": event_id})
    event: dict[str, Any] | None = data["event"]
    return event


async def count_rows(database: Database, table: str) -> int:
    async with database.session() as session:
        result = await session.execute(sa.text(f"SELECT count(*) FROM {table}"))
        return int(result.scalar_one())


async def bad_user_input(
    api: GraphQLClient, query: str, variables: dict[str, Any]
) -> tuple[str, list[str]]:
    """The (reason, field) of a query refused with one BAD_USER_INPUT error and no data."""
    response = await api.post(query, variables)
    body = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    return error["extensions"]["reason"], error["extensions"].get("field")


def undo_service_logging() -> None:
    """After a test applied graph.logs.logging_config: back to pytest's own handlers for
    the tests that follow."""
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    for name in ("usage_events", "uvicorn", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger().handlers.clear()


def count_seals(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The keyset positions sealed into cursors from now on, in order (a spy on
    Cursors.encode that seals them as before)."""
    sealed: list[Any] = []
    encode = Cursors.encode

    def counted(self: Cursors, keyset: Any, position: Any) -> str:
        sealed.append(position)
        return encode(self, keyset, position)

    monkeypatch.setattr(Cursors, "encode", counted)
    return sealed
