"""Which operation of a document runs: the one named, or the only one there is.

Strawberry falls back to a document's first operation when no operationName is sent;
GraphQL (§6.1, GetOperation) makes that a request error when the document holds more
than one, and running an operation the client did not choose is worse than refusing.
"""

from collections.abc import Iterator

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension


class RequireOperationName(SchemaExtension):
    """A document of several operations needs operationName; none of them runs without it."""

    def on_validate(self) -> Iterator[None]:
        # Before validation runs: errors set here stop the request before execution.
        context = self.execution_context
        document = context.graphql_document
        # Strawberry keeps the name the client sent only here; `operation_name` already
        # holds its fallback. The tests run a named choice, so a rename cannot go unseen.
        chosen_by_client = getattr(context, "_provided_operation_name", None) is not None
        if document is not None and not chosen_by_client:
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
