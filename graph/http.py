"""GraphQL over HTTP (SPEC §9): POST and GET /graphql, GraphiQL, auth, bounds.

A small endpoint of our own around `schema.execute` (and graph.prepared for queries it
has run before) rather than Strawberry's view: it refuses oversized bodies before
reading them, answers 401 before any GraphQL work, speaks
`application/graphql-response+json` with its status codes, and closes the request's
read connection when the response is ready.
"""

import asyncio
import json
import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import orjson
import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Scope
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from db.database import Database
from db.faults import describe_fault, is_database_unavailable
from db.ids import hash_api_key_secret
from db.records import BusinessRecord
from db.repositories.businesses import BusinessRepository
from db.settings import Settings
from graph.admission import Admission, TurnedAway
from graph.context import RequestContext
from graph.errors import (
    DATABASE_UNAVAILABLE,
    DATABASE_UNAVAILABLE_MESSAGE,
    INTERNAL_SERVER_ERROR,
    UNAUTHENTICATED,
    format_error,
    is_request_error,
    masked_error_extensions,
    outage_extensions,
)
from graph.graphiql import graphiql_response
from graph.input_guards import body_may_hold_nul, nul_location, variables_refusal
from graph.internals import extensions_hook_resolution
from graph.prepared import PreparedQueries
from graph.request_log import RequestRecord, request_record
from graph.serving import BODY_RECEIVED

logger = logging.getLogger("usage_events.http")

# An operationName is any string a client sends; the access line keeps this much of it.
MAX_LOGGED_NAME_LENGTH = 100

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"

# Retry-After of a 503 for a database outage: a client retrying sooner meets it again.
DATABASE_RETRY_AFTER_SECONDS = 5


class HTTPError(Exception):
    def __init__(self, status_code: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code

    @property
    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"} if self.status_code == 401 else None


class GraphQLEndpoint:
    def __init__(self, schema: strawberry.Schema, database: Database, settings: Settings) -> None:
        self.schema = schema
        self.database = database
        self.settings = settings
        self.admission = Admission(settings)
        # Queries Strawberry accepted, run by graphql-core directly from then on; not
        # with a schema whose extensions hook resolution, which only Strawberry runs.
        self.prepared = (
            None if extensions_hook_resolution(schema) else PreparedQueries(schema, settings)
        )

    async def handle(self, request: Request) -> Response:
        headers = EndpointHeaders.of(request.scope)
        media_type = _response_media_type(headers)
        try:
            if request.scope["method"] == "GET" and _wants_graphiql(request, headers):
                return graphiql_response()
            return await self._handle(request, headers, media_type)
        except (HTTPError, TurnedAway) as refusal:
            _note_code(request, refusal.code)
            body = {"errors": [{"message": refusal.message, "extensions": {"code": refusal.code}}]}
            return _json_response(body, refusal.status_code, media_type, refusal.headers)
        except Exception as error:
            # An outage met outside execution: the key lookup, or closing the connection.
            if is_database_unavailable(error):
                logger.warning("database unavailable: %s", describe_fault(error))
                _note_code(request, DATABASE_UNAVAILABLE)
                outage = outage_extensions()
                body = {"errors": [{"message": DATABASE_UNAVAILABLE_MESSAGE, "extensions": outage}]}
                return _database_unavailable_response(body, media_type)
            # Outside execution (a bug in the key lookup, say): still a GraphQL response,
            # with the details in the log rather than in the client's hands.
            logger.exception("request failed before or around GraphQL execution")
            _note_code(request, INTERNAL_SERVER_ERROR)
            body = {
                "errors": [
                    {"message": "Internal server error", "extensions": masked_error_extensions()}
                ]
            }
            return _json_response(body, 500, media_type)

    async def _handle(
        self, request: Request, headers: "EndpointHeaders", media_type: str
    ) -> Response:
        record = request_record(request.scope)
        with self.admission.request():
            business = await self._authenticate(request, headers)
            if record is not None:
                record.business_id = business.id
            with (
                self.admission.business_request(business.id),
                self._large_body(request, headers),
            ):
                return await self._execute(request, headers, media_type, business, record)

    def _large_body(
        self, request: Request, headers: "EndpointHeaders"
    ) -> AbstractContextManager[None]:
        """A slot for a large body (graph.admission), or nothing for a small one.

        A body sent without a Content-Length (chunked) may be as large as any: it takes one.
        """
        declared = headers.content_length
        if declared is not None and declared.isdigit():
            # Too large to take at all: said so (413), rather than that the server is busy.
            self._refuse_oversized(int(declared))
        if request.scope["method"] != "POST" or (
            declared is not None
            and declared.isdigit()
            and int(declared) <= self.settings.large_request_bytes
        ):
            return _NO_SLOT
        return self.admission.large_request()

    async def _execute(
        self,
        request: Request,
        headers: "EndpointHeaders",
        media_type: str,
        business: BusinessRecord,
        record: RequestRecord | None,
    ) -> Response:
        if request.scope["method"] == "GET":
            payload: Any = dict(request.query_params)
            if "variables" in payload:
                payload["variables"] = _parse_json(payload["variables"].encode(), "variables")
            if "extensions" in payload:
                payload["extensions"] = _parse_json(payload["extensions"].encode(), "extensions")
            allowed = _GET_OPERATIONS
            may_hold_nul = True
        else:
            raw = await self._read_body(request, headers)
            payload = _parse_json(raw, "request body")
            allowed = _POST_OPERATIONS
            may_hold_nul = body_may_hold_nul(raw)
        query, variables, operation_name = _graphql_params(payload)
        if record is not None and operation_name is not None:
            record.operation = operation_name[:MAX_LOGGED_NAME_LENGTH]
        if variables is not None and (
            refusal := variables_refusal(
                variables, self.settings.max_input_depth, self.settings.max_input_values
            )
        ):
            raise HTTPError(400, refusal, "BAD_USER_INPUT")
        if location := nul_location(payload if may_hold_nul else None, query):
            raise HTTPError(
                400,
                f"Strings must not contain the NUL character (U+0000); found in {location}.",
                "BAD_USER_INPUT",
            )

        context = RequestContext(
            self.database,
            self.settings,
            business,
            # orjson writes the result: a page's nodes may come as JSON text from PostgreSQL.
            serialized_rows=self.database.dialect_name == "postgresql",
        )
        prepared = self.prepared
        accepted = (
            prepared.runnable(query, operation_name, variables)
            if prepared is not None  # Kept documents are queries, which either method runs.
            else None
        )
        try:
            if prepared is not None and accepted is not None:
                result: ExecutionResult | GraphQLExecutionResult = await prepared.execute(
                    accepted, context, variables, operation_name
                )
            else:
                result = await self.schema.execute(
                    query,
                    variable_values=variables,
                    context_value=context,
                    operation_name=operation_name,
                    allowed_operation_types=allowed,
                )
                if prepared is not None and context.accepted_query is not None:
                    prepared.remember(query, operation_name, context.accepted_query)
        except InvalidOperationTypeError as error:
            if error.operation_type == OperationType.MUTATION:
                raise HTTPError(
                    405, "Mutations must be sent with POST.", "METHOD_NOT_ALLOWED"
                ) from error
            raise HTTPError(
                400, "Only queries and mutations are served here.", "BAD_REQUEST"
            ) from error
        except CannotGetOperationTypeError as error:
            raise HTTPError(400, error.as_http_error_reason(), "BAD_REQUEST") from error
        finally:
            await context.close()

        body: dict[str, Any] = {}
        errors: list[GraphQLError] = result.errors or []
        if errors:
            body["errors"] = [format_error(error) for error in errors]
        # `data` is present (possibly null) whenever execution started (GraphQL spec §7.1).
        executed = result.data is not None or not all(map(is_request_error, errors))
        if executed or not errors:
            body["data"] = result.data
        # GraphQL-over-HTTP: a request that never executed is a 400 under the new media type.
        status = 400 if media_type == GRAPHQL_RESPONSE_JSON and not executed else 200
        if errors and any(is_database_unavailable(error.original_error) for error in errors):
            # Part of the answer is missing for an outage (format_error logged it): try again.
            _note_code(request, DATABASE_UNAVAILABLE)
            return _database_unavailable_response(body, media_type)
        return _json_response(body, status, media_type)

    def _refuse_oversized(self, size: int) -> None:
        limit = self.settings.max_request_bytes
        if size > limit:
            raise HTTPError(
                413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE"
            )

    async def _read_body(self, request: Request, headers: "EndpointHeaders") -> bytes:
        limit = self.settings.max_request_bytes
        content_type = headers.content_type.split(";")[0].strip().lower()
        if content_type not in (APPLICATION_JSON, GRAPHQL_RESPONSE_JSON, ""):
            raise HTTPError(
                415, "Send the GraphQL request as application/json.", "UNSUPPORTED_MEDIA_TYPE"
            )
        timeout = self.settings.body_read_timeout.total_seconds()
        deadline = body_deadline(request.scope, timeout)
        try:
            if deadline is None:
                # Nothing to bound: entering asyncio.timeout would cost a point read 3 % of
                # its instructions for no deadline at all.
                return await _read_chunks(request, limit)
            async with asyncio.timeout(deadline):
                return await _read_chunks(request, limit)
        except TimeoutError:
            raise HTTPError(
                408,
                f"The request body did not arrive within {timeout:g} seconds "
                "(USAGE_EVENTS_BODY_READ_TIMEOUT).",
                "REQUEST_TIMEOUT",
            ) from None
        except ClientDisconnect:
            # Nobody reads the answer; an HTTPError keeps it out of the error log.
            raise HTTPError(
                400, "The client left before sending the whole body.", "CLIENT_DISCONNECTED"
            ) from None

    async def _authenticate(self, request: Request, headers: "EndpointHeaders") -> BusinessRecord:
        header = headers.authorization
        scheme, _, secret = header.partition(" ")
        if not header:
            raise HTTPError(
                401,
                "Send your API key in the Authorization header: 'Bearer uek_…'.",
                UNAUTHENTICATED,
            )
        if scheme.lower() != "bearer" or not secret.strip():
            raise HTTPError(
                401, "The Authorization header must read 'Bearer <api key>'.", UNAUTHENTICATED
            )
        client = request.scope.get("client")  # What Request.client reads, without its tuple.
        address = client[0] if client else ""
        secret = secret.strip()
        secret_hash = hash_api_key_secret(secret)
        # A key seen lately needs no query (db.api_key_cache); an address over its limit of
        # failed checks is refused all the same.
        self.admission.check_address(address)
        known = self.database.api_keys.business_of(secret_hash)
        if known is not None:
            return known
        generation = self.database.api_keys.generation
        with self.admission.key_check(address) as check:
            async with self.database.session() as session:
                repository = BusinessRepository(session)
                business = await repository.authenticate(secret)
                # A revoked key sent again (a client not yet updated) is no guess.
                check.guess = business is None and not await repository.was_issued(secret)
        if business is None:
            raise HTTPError(401, "The API key is unknown or revoked.", UNAUTHENTICATED)
        self.database.api_keys.remember(secret_hash, business, generation)
        return business


async def _read_chunks(request: Request, limit: int) -> bytes:
    """The request's body, refused once it is over `limit` bytes: a chunked body has no
    Content-Length, so the count is kept while reading."""
    chunks: list[bytes] = []
    size = 0
    # The messages read as Starlette's Request.stream reads them, without an asynchronous
    # generator (the event loop's hooks for one, a weak set of them, and its steps): with
    # the other changes of its commit, 3.6 % of a point read's instructions. The request's
    # body cannot be read again through it afterwards; nothing here does.
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(
                413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def body_deadline(scope: Scope, timeout: float) -> float | None:
    """Seconds the body of the request of `scope` may take to arrive (None: no bound).

    A body that stops arriving would hold the request (and its slot) for good; one the
    server has already read whole (graph.serving's BODY_RECEIVED) cannot stop arriving.
    """
    if scope.get(BODY_RECEIVED):
        return None
    return timeout or None


# orjson reads an integer beyond 64 bits as a float, silently; one with 19 or more digits
# sends the body to the standard parser, which keeps every integer exact (and the rules
# refuse the ones out of range). A string of digits that long only costs the slower parse.
LONG_DIGIT_RUN = 19
# Every digit made a "0" (no other byte is one): a run of digits is then a plain substring,
# which bytes' search finds 4-5 times faster than the regex `[0-9]{19}` scans a body (2 µs
# of a point read's body; 11 ms of 1 MB).
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"0" * 9)
_ZEROS = b"0" * LONG_DIGIT_RUN


def has_long_digit_run(raw: bytes) -> bool:
    """Whether `raw` holds LONG_DIGIT_RUN or more digits in a row."""
    return _ZEROS in raw.translate(_DIGITS_AS_ZEROS)


def _parse_json(raw: bytes, what: str) -> Any:
    if not has_long_digit_run(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    # orjson refuses NaN and Infinity; the standard parser reads them, so that a NaN in
    # metadata reaches the rules and is reported where it stands (METADATA_VALUE_INVALID).
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise HTTPError(400, f"The {what} is not valid JSON.", "BAD_REQUEST") from error
    # The standard parser also reads an unpaired surrogate escape ("\ud800") into a string
    # that is no Unicode text: nothing could store or print it, so it is refused here.
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError as error:
        raise HTTPError(
            400,
            f"The {what} holds an unpaired UTF-16 surrogate escape; strings must be Unicode text.",
            "BAD_REQUEST",
        ) from error
    return value


def _graphql_params(payload: Any) -> tuple[str, dict[str, Any] | None, str | None]:
    if not isinstance(payload, dict):
        raise HTTPError(400, "The request body must be a JSON object.", "BAD_REQUEST")
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        raise HTTPError(400, "The request has no GraphQL query.", "BAD_REQUEST")
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise HTTPError(400, "variables must be a JSON object.", "BAD_REQUEST")
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise HTTPError(400, "operationName must be a string.", "BAD_REQUEST")
    # Unused here, but part of the request's shape (GraphQL over HTTP): a map or nothing.
    extensions = payload.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise HTTPError(400, "extensions must be a JSON object.", "BAD_REQUEST")
    return query, variables, operation_name


@dataclass(slots=True)
class EndpointHeaders:
    """The request headers the endpoint reads, each the first of its name as Starlette's
    `Request.headers.get` gives it, found in one pass over the request's: four lookups in
    Starlette's Headers scanned the list four times (1 % of a point read's instructions)."""

    accept: str = ""
    authorization: str = ""
    content_length: str | None = None
    content_type: str = ""

    @classmethod
    def of(cls, scope: Scope) -> "EndpointHeaders":
        found = cls()
        seen: set[str] = set()
        name: bytes
        value: bytes
        # ASGI servers give header names lowercased.
        for name, value in scope["headers"]:
            field = _ENDPOINT_HEADERS.get(name)
            if field is not None and field not in seen:
                seen.add(field)
                setattr(found, field, value.decode("latin-1"))
        return found


_ENDPOINT_HEADERS = {
    b"accept": "accept",
    b"authorization": "authorization",
    b"content-length": "content_length",
    b"content-type": "content_type",
}


# What a small body takes instead of a slot; made once (nullcontext keeps no state).
_NO_SLOT: AbstractContextManager[None] = nullcontext()

# The operations each method may run (GraphQL over HTTP: no mutation by GET).
_GET_OPERATIONS = frozenset({OperationType.QUERY})
_POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


def _wants_graphiql(request: Request, headers: EndpointHeaders) -> bool:
    return "query" not in request.query_params and "text/html" in headers.accept


def _response_media_type(headers: EndpointHeaders) -> str:
    """GraphQL-over-HTTP: the new media type when the client names it, else plain JSON.

    No Accept, or a wildcard only (`*/*` is what curl, fetch, requests and httpx send unless
    told otherwise), is a legacy client that never said it reads the new media type and its
    4xx statuses: it gets application/json, which a wildcard accepts as well. This is what
    graphql-http's audits 47DE and 80D8 (tests/e2e/test_graphql_http_audit.py) ask for.
    """
    accept = headers.accept
    return GRAPHQL_RESPONSE_JSON if GRAPHQL_RESPONSE_JSON in accept else APPLICATION_JSON


def _note_code(request: Request, code: str) -> None:
    """The error code of a refused or failed request, for its access line."""
    record = request_record(request.scope)
    if record is not None:
        record.code = code


def _database_unavailable_response(body: Any, media_type: str) -> Response:
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
    return _json_response(body, 503, media_type, headers)


def _json_response(
    body: Any, status: int, media_type: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )
