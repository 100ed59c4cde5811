"""Query documents run straight through graphql-core once Strawberry has accepted them.

Strawberry's `Schema.execute` spends more per request than a small query's execution
itself: an execution context, the schema's seven extensions made afresh, their hooks
entered and left around parsing, validation and execution, the parse and validation
caches' lookups, the document's bounds measured again (issue 14's profiles: about a
sixth of a point read's CPU). Of all that, only the response-cost bound depends on
anything but the document and the operation chosen: it reads the variables.

So a query that Strawberry has run once — it passed parsing, validation and every bound,
and its execution began — is kept with its syntax tree, per (query, operationName). Its
next requests check the response-cost bound with their own variables and are executed by
graphql-core's `execute` with the very arguments Strawberry gives it (graph.internals
holds the two names that takes), or, for a point read, a page of plain events or the
root's `__typename` alone, by a plan of its own (graph.plans). Anything else — a new or
large document, a mutation, a response the bound refuses, an operation the request's
method may not run — goes Strawberry's way and gets its answer there, errors included.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import strawberry
from graphql import DocumentNode, ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from db.kept import Kept
from db.settings import Settings
from graph.document_caches import CACHED_DOCUMENTS, is_small
from graph.internals import execute_accepted, graphql_core_schema_of
from graph.plans import QueryPlan, query_plan
from graph.response_cost import response_cost_refusal

DocumentKey = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class AcceptedQuery:
    """A query document Strawberry parsed, validated, bounded and began to execute."""

    document: DocumentNode
    # What each request of it runs instead of graphql-core's execution (graph.plans),
    # worked out once the query is kept; None: graphql-core's execution.
    plan: QueryPlan | None = None


class NoteAcceptedDocument(SchemaExtension):
    """Tells the request (graph.context.RequestContext) which document execution began.

    Execution begins only once parsing, validation, every bound and the operation type
    check have passed; the schema's last extension, so that every other has had its say.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        request = context.context
        if (
            hasattr(request, "accepted_query")
            and context.graphql_document is not None
            and context.operation_type is OperationType.QUERY
        ):
            request.accepted_query = AcceptedQuery(context.graphql_document)
        yield


class PreparedQueries:
    """The accepted queries of one schema, the most recently used kept."""

    def __init__(
        self, schema: strawberry.Schema, settings: Settings, size: int = CACHED_DOCUMENTS
    ) -> None:
        self.schema = schema
        self.graphql_schema = graphql_core_schema_of(schema)
        self.settings = settings
        self._kept: Kept[DocumentKey, AcceptedQuery] = Kept(size)

    def remember(self, query: str, operation_name: str | None, accepted: AcceptedQuery) -> None:
        # Large documents are not kept, as the parse and validation caches keep none.
        if not is_small(query):
            return
        plan = query_plan(self.schema, accepted.document, operation_name)
        # A plan whose response cost no variable changes (a point read's) is bounded once
        # here, not at each request (see `runnable`).
        if (
            plan is not None
            and plan.cost_is_fixed
            and response_cost_refusal(
                self.graphql_schema, accepted.document, operation_name, None, self.settings
            )
        ):
            plan = None
        self._kept.keep((query, operation_name), replace(accepted, plan=plan))

    def runnable(
        self, query: str, operation_name: str | None, variables: Mapping[str, Any] | None
    ) -> AcceptedQuery | None:
        """The kept query, if these variables keep its answer within the response-cost
        bound; None sends the request Strawberry's way."""
        if not is_small(query):
            return None  # Never kept: not worth hashing.
        accepted = self._kept.get((query, operation_name))
        if accepted is None:
            return None
        if accepted.plan is not None and accepted.plan.cost_is_fixed:
            return accepted  # Its cost, the same for any variables, was bounded once.
        refusal = response_cost_refusal(
            self.graphql_schema, accepted.document, operation_name, variables, self.settings
        )
        return None if refusal is not None else accepted

    async def execute(
        self,
        accepted: AcceptedQuery,
        context: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult:
        if accepted.plan is not None:
            planned = await accepted.plan.run(context, variables)
            if planned is not None:
                return planned
        try:
            return await execute_accepted(
                self.schema, accepted.document, context, variables, operation_name
            )
        except Exception as error:  # As Strawberry answers an error that escapes execution.
            failure = error if isinstance(error, GraphQLError) else None
            return ExecutionResult(
                data=None, errors=[failure or GraphQLError(str(error), original_error=error)]
            )
