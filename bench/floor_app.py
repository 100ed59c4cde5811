"""The floor server: a plain Starlette app with the service's own queries, and no GraphQL.

It takes the very bodies the GraphQL scenarios send (reading only their `variables`),
authenticates the Bearer key the same way (BusinessRepository.authenticate, in a session
of its own, as graph/http.py does), runs the same repository call
(EventListing.page / EventRepository.get_by_event_id) and answers with the same JSON
document the service would — same fields, same formatting, same envelope — serialized by
orjson. What it leaves out is exactly the GraphQL layer: that is the floor.

    python -m bench.floor_app --port 8101     (USAGE_EVENTS_DATABASE_URL as for `serve`)
"""

import argparse
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.database import Database
from db.errors import BadUserInput
from db.event_filter import EventFilter, EventOrder
from db.pagination import PageRequest
from db.records import BusinessRecord, EventRecord
from db.repositories.businesses import BusinessRepository
from db.repositories.event_listing import EventListing
from db.repositories.events import EventRepository
from db.settings import Settings, get_settings

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
SINK_ANSWER = orjson.dumps(
    {"data": {"ingestEvents": {"ingestedCount": 0, "duplicateCount": 0, "userErrors": []}}}
)


def _datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _parse_datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event_json(record: EventRecord) -> dict[str, Any]:
    """Every scalar field of Event, in the order the benchmark's GraphQL query selects them."""
    return {
        "id": record.id,
        "eventId": record.event_id,
        "businessId": record.business_id,
        "customerId": record.customer_id,
        "externalCustomerId": record.external_customer_id,
        "eventName": record.event_name,
        "timestamp": _datetime(record.timestamp),
        "metadata": record.metadata,
        "ingestedAt": _datetime(record.ingested_at),
        "deprecated": record.deprecated_at is not None,
        "deprecatedAt": _datetime(record.deprecated_at),
        "deprecationReason": record.deprecation_reason,
        "revision": record.revision,
    }


def _event_filter(raw: dict[str, Any] | None) -> EventFilter:
    raw = raw or {}
    return EventFilter(
        customer_id=raw.get("customerId"),
        external_customer_id=raw.get("externalCustomerId"),
        event_name=raw.get("eventName"),
        event_ids=tuple(raw["eventIds"]) if raw.get("eventIds") is not None else None,
        meter_id=raw.get("meterId"),
        metadata=raw.get("metadata"),
        start=_parse_datetime(raw.get("start")),
        end=_parse_datetime(raw.get("end")),
        include_deprecated=bool(raw.get("includeDeprecated", False)),
    )


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON_MEDIA_TYPE)


def create_floor_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    database = Database.from_settings(settings)

    async def authenticate(request: Request) -> BusinessRecord | None:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        async with database.session() as session:
            return await BusinessRepository(session).authenticate(secret.strip())

    async def variables_of(request: Request) -> dict[str, Any]:
        payload = orjson.loads(await request.body())
        return payload.get("variables") or {}

    async def list_events(request: Request) -> Response:
        business = await authenticate(request)
        if business is None:
            return _json({"errors": [{"message": "unauthenticated"}]}, 401)
        variables = await variables_of(request)
        page_request = PageRequest(
            first=variables.get("first"),
            after=variables.get("after"),
            last=variables.get("last"),
            before=variables.get("before"),
            cursor_key=business.cursor_key,
        )
        order = EventOrder(variables.get("orderBy", "TIMESTAMP_DESC"))
        try:
            async with database.session() as session:
                page = await EventListing(session, business.id).page(
                    _event_filter(variables.get("filter")), order, page_request, settings
                )
                has_next_page = await page.has_next_page()
                has_previous_page = await page.has_previous_page()
        except BadUserInput as error:
            return _json({"errors": [{"message": str(error)}]}, 400)
        body = {
            "data": {
                "events": {
                    "pageInfo": {
                        "hasNextPage": has_next_page,
                        "hasPreviousPage": has_previous_page,
                        "startCursor": page.start_cursor,
                        "endCursor": page.end_cursor,
                    },
                    "nodes": [event_json(record) for record in page.items],
                }
            }
        }
        return _json(body)

    async def one_event(request: Request) -> Response:
        business = await authenticate(request)
        if business is None:
            return _json({"errors": [{"message": "unauthenticated"}]}, 401)
        variables = await variables_of(request)
        async with database.session() as session:
            record = await EventRepository(session, business.id).get_by_event_id(
                variables["eventId"]
            )
        return _json({"data": {"event": event_json(record) if record else None}})

    async def sink(request: Request) -> Response:
        """Reads and parses the body, answers a constant: the HTTP cost of an ingest batch."""
        orjson.loads(await request.body())
        return Response(SINK_ANSWER, media_type=JSON_MEDIA_TYPE)

    async def healthz(_request: Request) -> Response:
        return _json({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await database.dispose()

    return Starlette(
        routes=[
            Route("/floor/events", list_events, methods=["POST"]),
            Route("/floor/event", one_event, methods=["POST"]),
            Route("/sink", sink, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    arguments = parser.parse_args()
    # The same server stack as `usage-events serve`: uvicorn's defaults (uvloop and
    # httptools when installed), no access log.
    uvicorn.run(
        "bench.floor_app:create_floor_app",
        factory=True,
        host=arguments.host,
        port=arguments.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
