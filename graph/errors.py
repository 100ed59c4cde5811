"""How errors look on the wire: every GraphQL error gets `extensions.code` (SPEC §8)."""

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import SchemaExtension

from db.errors import BadUserInput
from db.faults import describe_fault, is_database_unavailable
from graph.logs import current_request_id

logger = logging.getLogger("usage_events.errors")

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
UNAUTHENTICATED = "UNAUTHENTICATED"
# The database is away, slow or full (db.faults): HTTP 503 with Retry-After, not a bug.
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable right now; try again in a few seconds."

# The longest error message sent; longer ones (quoting a huge literal) are cut.
MAX_MESSAGE_LENGTH = 1000


class TagRequestErrors(SchemaExtension):
    """Marks parse and validation errors with their code while their phase is known."""

    def on_parse(self) -> Iterator[None]:
        yield
        self._tag(PARSE_FAILED)

    def on_validate(self) -> Iterator[None]:
        yield
        self._tag(VALIDATION_FAILED)

    def _tag(self, code: str) -> None:
        for error in self.execution_context.pre_execution_errors or []:
            if error.extensions is None or "code" not in error.extensions:
                error.extensions = {**(error.extensions or {}), "code": code}


def is_request_error(error: GraphQLError) -> bool:
    """A request error (no field path) means the operation never ran: HTTP 400 territory."""
    return error.path is None


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The error as sent to the client; unexpected failures are masked and logged."""
    original = error.original_error
    if isinstance(original, BadUserInput):
        extensions: dict[str, Any] = {"code": BAD_USER_INPUT, "reason": original.code.value}
        if original.field is not None:
            extensions["field"] = list(original.field)
        return _shaped(error, original.message, extensions)
    # A scalar's own message about a literal in the document (a bad DateTime written
    # inline) reaches validation as a plain exception: it is the client's error, not ours.
    literal_refused = error.path is None and (error.extensions or {}).get("code") == (
        VALIDATION_FAILED
    )
    if original is not None and is_database_unavailable(original):
        # An outage, not a bug: one line without a traceback (graph.http answers 503).
        logger.warning("database unavailable at %s: %s", error.path, describe_fault(original))
        return _shaped(error, DATABASE_UNAVAILABLE_MESSAGE, outage_extensions())
    if original is not None and not isinstance(original, GraphQLError) and not literal_refused:
        logger.error("unexpected error while resolving %s", error.path, exc_info=original)
        return _shaped(error, "Internal server error", masked_error_extensions())
    extensions = dict(error.extensions or {})
    if "code" not in extensions:
        if isinstance(error, GraphQLSyntaxError):
            extensions["code"] = PARSE_FAILED
        else:
            # Left without a code at this point: variable values that do not fit their types.
            extensions["code"] = BAD_USER_INPUT
    return _shaped(error, error.message, extensions)


def masked_error_extensions() -> dict[str, Any]:
    """What a client learns of an unexpected failure: its code, and the request's id to
    quote, which finds the failure's one traceback in the server log."""
    return _with_request_id(INTERNAL_SERVER_ERROR)


def outage_extensions() -> dict[str, Any]:
    """What a client learns of a database outage: its code and the request's id."""
    return _with_request_id(DATABASE_UNAVAILABLE)


def _with_request_id(code: str) -> dict[str, Any]:
    return {"code": code, "requestId": current_request_id.get()}


def bounded_message(message: str) -> str:
    """A message as sent: never longer than MAX_MESSAGE_LENGTH, whatever it quotes.

    GraphQL's own messages quote the document ("found <literal>"), and a literal may be
    megabytes long; no answer repeats unbounded input back to its sender.
    """
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 1] + "…"


def _shaped(error: GraphQLError, message: str, extensions: dict[str, Any]) -> dict[str, Any]:
    formatted: dict[str, Any] = {"message": bounded_message(message)}
    if error.locations:
        formatted["locations"] = [
            {"line": location.line, "column": location.column} for location in error.locations
        ]
    if error.path is not None:
        formatted["path"] = error.path
    formatted["extensions"] = extensions
    return formatted
