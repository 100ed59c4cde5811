"""GraphQL over HTTP (SPEC §9): POST and GET /graphql, GraphiQL, auth, bounds.

A small endpoint of our own around `schema.execute` rather than Strawberry's view: it
refuses oversized bodies before reading them, answers 401 before any GraphQL work,
speaks `application/graphql-response+json` with its status codes, and closes the
request's session when the response is ready.
"""

import json
import logging
import re
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from db.database import Database
from db.records import BusinessRecord
from db.repositories.businesses import BusinessRepository
from db.settings import Settings
from graph.context import RequestContext
from graph.errors import INTERNAL_SERVER_ERROR, UNAUTHENTICATED, format_error, is_request_error
from graph.graphiql import graphiql_response
from graph.input_guards import body_may_hold_nul, nested_deeper_than, nul_location

logger = logging.getLogger("usage_events.http")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"


class HTTPError(Exception):
    def __init__(self, status_code: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code


class GraphQLEndpoint:
    def __init__(self, schema: strawberry.Schema, database: Database, settings: Settings) -> None:
        self.schema = schema
        self.database = database
        self.settings = settings

    async def handle(self, request: Request) -> Response:
        media_type = _response_media_type(request)
        try:
            if request.method == "GET" and _wants_graphiql(request):
                return graphiql_response()
            return await self._handle(request, media_type)
        except HTTPError as error:
            body = {"errors": [{"message": error.message, "extensions": {"code": error.code}}]}
            headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
            return _json_response(body, error.status_code, media_type, headers)
        except Exception:
            # Outside execution (the key lookup, a pool timeout): still a GraphQL response,
            # with the details in the log rather than in the client's hands.
            logger.exception("request failed before or around GraphQL execution")
            body = {
                "errors": [
                    {
                        "message": "Internal server error",
                        "extensions": {"code": INTERNAL_SERVER_ERROR},
                    }
                ]
            }
            return _json_response(body, 500, media_type)

    async def _handle(self, request: Request, media_type: str) -> Response:
        business = await self._authenticate(request)
        if request.method == "GET":
            payload: Any = dict(request.query_params)
            if "variables" in payload:
                payload["variables"] = _parse_json(payload["variables"].encode(), "variables")
            if "extensions" in payload:
                payload["extensions"] = _parse_json(payload["extensions"].encode(), "extensions")
            allowed = {OperationType.QUERY}
            may_hold_nul = True
        else:
            raw = await self._read_body(request)
            payload = _parse_json(raw, "request body")
            allowed = {OperationType.QUERY, OperationType.MUTATION}
            may_hold_nul = body_may_hold_nul(raw)
        query, variables, operation_name = _graphql_params(payload)
        if variables is not None and nested_deeper_than(variables, self.settings.max_input_depth):
            raise HTTPError(
                400,
                f"variables nest deeper than {self.settings.max_input_depth} levels.",
                "BAD_USER_INPUT",
            )
        if location := nul_location(payload if may_hold_nul else None, query):
            raise HTTPError(
                400,
                f"Strings must not contain the NUL character (U+0000); found in {location}.",
                "BAD_USER_INPUT",
            )

        context = RequestContext(self.database, self.settings, business)
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=allowed,
            )
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
        return _json_response(body, status, media_type)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(
                413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE"
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (APPLICATION_JSON, GRAPHQL_RESPONSE_JSON, ""):
            raise HTTPError(
                415, "Send the GraphQL request as application/json.", "UNSUPPORTED_MEDIA_TYPE"
            )
        # A chunked body has no Content-Length: count while reading and stop at the limit.
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(
                    413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _authenticate(self, request: Request) -> BusinessRecord:
        header = request.headers.get("authorization", "")
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
        async with self.database.session() as session:
            business = await BusinessRepository(session).authenticate(secret.strip())
        if business is None:
            raise HTTPError(401, "The API key is unknown or revoked.", UNAUTHENTICATED)
        return business


# orjson reads an integer beyond 64 bits as a float, silently; one with 19 or more digits
# sends the body to the standard parser, which keeps every integer exact (and the rules
# refuse the ones out of range). A string of digits that long only costs the slower parse.
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")


def _parse_json(raw: bytes, what: str) -> Any:
    if not _LONG_DIGIT_RUN.search(raw):
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
    return query, variables, operation_name


def _wants_graphiql(request: Request) -> bool:
    return "query" not in request.query_params and "text/html" in request.headers.get("accept", "")


def _response_media_type(request: Request) -> str:
    """GraphQL-over-HTTP: the new media type when accepted, plain JSON for legacy clients."""
    accept = request.headers.get("accept", "")
    if GRAPHQL_RESPONSE_JSON in accept:
        return GRAPHQL_RESPONSE_JSON
    if APPLICATION_JSON in accept or not accept:
        return APPLICATION_JSON
    accepted = {part.split(";")[0].strip() for part in accept.split(",")}
    return GRAPHQL_RESPONSE_JSON if accepted & {"*/*", "application/*"} else APPLICATION_JSON


def _json_response(
    body: Any, status: int, media_type: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )
