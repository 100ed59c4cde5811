"""Plans compiled once per kept query document, for the hottest shape: a point read.

A document Strawberry accepted once is kept (graph.prepared) and its next requests are
executed by graphql-core directly. For `{ event(eventId: …) { …plain fields… } }` even
that is most of the request: graphql-core builds an executor, collects the fields, calls
Strawberry's resolver wrapper, which converts the arguments, and completes six values,
to place one row (issue 14's profiles: about a third of a point read's CPU). So when the
document is accepted, it is looked at once; if its operation is exactly that shape, the
plan it gets says what to read and where to put it, and each request of it costs a
dictionary lookup for the argument and the statement itself. PostgreSQL writes the
event's object with exactly the selected keys (db.event_json, as for pages of events)
and the text is placed in the result as an `orjson.Fragment`.

The shape, checked on the document's syntax tree (validation has already passed):
- the operation chosen is a query with no directives, selecting one field, `event`,
  with no directives, under any alias;
- `eventId` is a string literal and the operation declares no variables, or it is the
  operation's one variable, of type `String!`, with no default;
- the event's selection is plain fields of db.event_json's attributes and `__typename`,
  with no directives, arguments or fragments.

A request still goes graphql-core's way unless its variable is a string: a missing, null
or non-string value is the executor's to refuse, in its words. Everything else is
what `Query.event` does: its bound on the argument, its read, and an error raised in
either is placed at the field's path with a null, as graphql-core places it. Plans run
only where pages of events are written by PostgreSQL (RequestContext.serialized_rows),
for the service's own Query type, while `event` has no permission classes, field
extensions or directives, and for fields graph.execution would read plainly;
tests/graph/test_query_plans.py checks that each answer equals graphql-core's, errors
included.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLObjectType,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    TypeNode,
    VariableNode,
    get_operation_ast,
    located_error,
)
from strawberry.types.field import StrawberryField

from db.event_json import MAX_JSON_KEYS, Constant, JsonFields
from db.repositories.events import EventRepository
from graph.context import RequestContext
from graph.execution import plain_leaf_plans
from graph.internals import graphql_core_schema_of, strawberry_field_of
from graph.queries import Query, refuse_long_event_id
from graph.serialized import json_attributes
from graph.types.event import Event

_POINT_READ_FIELD = "event"
_POINT_READ_ARGUMENT = "eventId"


@dataclass(frozen=True, slots=True)
class EventPlan:
    """`event(eventId: …)` with plain fields: the one field of its operation."""

    field: FieldNode
    response_key: str
    # The literal eventId, or None when it is the variable `variable`.
    event_id: str | None
    variable: str | None
    fields: JsonFields

    async def run(
        self, context: RequestContext, variables: Mapping[str, Any] | None
    ) -> ExecutionResult | None:
        """The result of one request, or None to run it graphql-core's way instead."""
        if not context.serialized_rows:
            return None
        event_id = self.event_id
        if event_id is None:
            event_id = variables.get(self.variable) if variables and self.variable else None
            # Only a string coerces to String unchanged; anything else is refused, in
            # graphql-core's words, by its own coercion.
            if type(event_id) is not str:
                return None
        try:
            refuse_long_event_id(event_id)
            async with context.reading() as session:
                text = await EventRepository(session, context.business.id).json_by_event_id(
                    event_id, self.fields
                )
        except Exception as error:  # As graphql-core places an error of a nullable field.
            located = located_error(error, [self.field], [self.response_key])
            return ExecutionResult(data={self.response_key: None}, errors=[located])
        value = orjson.Fragment(text) if text is not None else None
        return ExecutionResult(data={self.response_key: value})


def query_plan(
    schema: strawberry.Schema, document: DocumentNode, operation_name: str | None
) -> EventPlan | None:
    """The plan of an accepted document's operation, if it has the shape above."""
    if schema.query is not Query or not _is_plain_root_field(schema, _POINT_READ_FIELD):
        return None
    operation = get_operation_ast(document, operation_name)
    if (
        operation is None
        or operation.operation is not OperationType.QUERY
        or operation.directives
        or len(operation.selection_set.selections) != 1
    ):
        return None
    field = operation.selection_set.selections[0]
    if (
        not isinstance(field, FieldNode)
        or field.name.value != _POINT_READ_FIELD
        or field.directives
        or field.selection_set is None
    ):
        return None
    arguments = field.arguments or ()
    if len(arguments) != 1 or arguments[0].name.value != _POINT_READ_ARGUMENT:
        return None
    argument = _argument_source(operation, arguments[0].value)
    fields = _plain_fields(schema, field)
    if argument is None or fields is None:
        return None
    event_id, variable = argument
    key = field.alias.value if field.alias else field.name.value
    return EventPlan(field, key, event_id, variable, fields)


def _argument_source(
    operation: OperationDefinitionNode, value: Any
) -> tuple[str | None, str | None] | None:
    """(literal, None) or (None, variable name) for the argument, or None if neither fits."""
    definitions = operation.variable_definitions or ()
    if isinstance(value, StringValueNode):
        return (value.value, None) if not definitions else None
    if not isinstance(value, VariableNode) or len(definitions) != 1:
        return None
    (definition,) = definitions
    if (
        definition.variable.name.value != value.name.value
        or definition.default_value is not None
        or definition.directives
        or not _is_string(definition.type)
    ):
        return None
    return None, value.name.value


def _is_string(type_node: TypeNode) -> bool:
    """`String!`, the one type validation lets a variable for `eventId` have."""
    return (
        isinstance(type_node, NonNullTypeNode)
        and isinstance(type_node.type, NamedTypeNode)
        and type_node.type.name.value == "String"
    )


def _is_plain_root_field(schema: strawberry.Schema, name: str) -> bool:
    """Whether Query's field `name` is its resolver alone: no permission classes, field
    extensions or schema directives that the plan would skip."""
    field = graphql_core_schema_of(schema).query_type.fields.get(name)  # type: ignore[union-attr]
    definition = strawberry_field_of(field) if field is not None else None
    return (
        isinstance(definition, StrawberryField)
        and not definition.permission_classes
        and not definition.extensions
        and not definition.directives
    )


def _plain_fields(schema: strawberry.Schema, field: FieldNode) -> JsonFields | None:
    """The event's (key, attribute) pairs in response order, if every selection is a
    plain field db.event_json writes: one the executor itself would only read and coerce
    (graph.execution), whose value PostgreSQL spells as the API does."""
    assert field.selection_set is not None
    type_name, json_fields = json_attributes(Event, schema.config.name_converter)
    event_type = graphql_core_schema_of(schema).get_type(type_name)
    assert isinstance(event_type, GraphQLObjectType)
    leaves = plain_leaf_plans(event_type)
    attributes = {name: json_fields[name] for name in json_fields.keys() & leaves.keys()}
    fields: dict[str, str | Constant] = {}
    for leaf in field.selection_set.selections:
        if (
            not isinstance(leaf, FieldNode)
            or leaf.directives
            or leaf.arguments
            or leaf.selection_set is not None
        ):
            return None
        name = leaf.name.value
        attribute = (type_name,) if name == "__typename" else attributes.get(name)
        if attribute is None:
            return None
        # Validation saw to it that a key selected twice is the same field: GraphQL merges
        # the two, in the place of the first.
        fields.setdefault(leaf.alias.value if leaf.alias else name, attribute)
    if not 0 < len(fields) <= MAX_JSON_KEYS:
        return None
    return tuple(fields.items())
