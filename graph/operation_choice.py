"""Which operation of a document runs: the one named, or the only one there is.

Strawberry falls back to a document's first operation when no operationName is sent;
GraphQL (§6.1, GetOperation) makes that a request error when the document holds more
than one, and running an operation the client did not choose is worse than refusing.
"""

from collections.abc import Iterator

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from graph.internals import operation_name_sent


class RequireOperationName(SchemaExtension):
    """A document of several operations needs operationName; none of them runs without it."""

    def on_validate(self) -> Iterator[None]:
        # Before validation runs: errors set here stop the request before execution.
        context = self.execution_context
        document = context.graphql_document
        # Not `context.operation_name`: that already holds Strawberry's fallback.
        if document is not None and operation_name_sent(context) is None:
            operations = sum(
                isinstance(definition, OperationDefinitionNode)
                for definition in document.definitions
            )
            if operations > 1:
                error = GraphQLError(
                    f"The document holds {operations} operations; "
                    "send operationName to choose the one to run."
                )
                context.pre_execution_errors = [*(context.pre_execution_errors or []), error]
        yield
