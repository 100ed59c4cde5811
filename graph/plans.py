"""Plans compiled once per kept query document, for the hottest shapes.

A document Strawberry accepted once is kept (graph.prepared) and its next requests are
executed by graphql-core directly. For a point read, a page of plain events or the
root's `__typename` alone even that is much of the request: graphql-core builds an
executor, collects the fields, calls Strawberry's resolver wrapper, which converts the
arguments, and completes each value (issue 14's profiles: about a third of a point
read's CPU, a fifth of a page's). So when the document is kept, it is looked at once; if
its operation has one of the shapes below, the plan it gets says what to read and where
to put it. PostgreSQL writes each event's object with exactly the selected keys
(db.event_json) and the texts are placed in the result as `orjson.Fragment`s.

The shapes, checked on the document's syntax tree (validation has already passed): the
operation chosen is a query with no directives selecting one field, under any alias,
with no directives, and
- `event(eventId: …)` (EventPlan): `eventId` a string literal and no variables declared,
  or the operation's one variable, of type `String!`, with no default; selecting plain
  fields (db.event_json's attributes and `__typename`) with no arguments;
- `events(…)` (EventsPlan), any of its arguments, literal or variable: selecting
  `nodes` with plain fields as above, or `edges` with a `node` of plain fields and, if
  asked, their `cursor` (as Relay asks for a page), and optionally `pageInfo` with its own four
  fields, nothing else (no `totalCount`) but `__typename`, on the connection, in
  `edges` and in `pageInfo`: Apollo Client and urql add it to every selection set of
  every document they send.

and, with no directives anywhere, one shape that reads nothing:
- `{ __typename }` (TypenamePlan): only the root type's `__typename`, under one key or
  more, as load balancers, gateways and clients probe a GraphQL endpoint (`__typename`
  is the cheapest query there is, and they send it for that). Its answer is the schema's
  alone, on either database.

Below the root field (and, for TypenamePlan, at the root), fields may come from
fragments (named or inline) on the object type itself, as clients made of components
write them; they are collected as GraphQL collects them (`_collected_from`). No
directive anywhere: `@skip`/`@include` may depend on the variables, which a plan made
once cannot know.

Each request does what the resolvers do (`Query.event`, `Query.events` and the
connection's, graph.types.connection): its bounds, its read, and an error raised in
either placed at the field's path as graphql-core places it (null for the nullable
`event`, null `data` for the non-null `events`).
What graphql-core would refuse before the resolver runs — a variable or argument it
cannot coerce — goes its way, unplanned, and so does a metadata filter (whose input
Strawberry converts). EventPlan and EventsPlan run only where pages of events are
written by PostgreSQL (RequestContext.serialized_rows), for the service's own Query
type, while the root field has no permission classes, field extensions or directives,
and for fields graph.execution would read plainly; TypenamePlan, for the service's own
Query type too, reads nothing and runs on either database. tests/graph/test_query_plans.py
checks that each answer equals graphql-core's, errors included.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeGuard

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    StringValueNode,
    TypeNode,
    VariableNode,
    get_argument_values,
    get_named_type,
    get_operation_ast,
    get_variable_values,
    located_error,
)
from strawberry.types.field import StrawberryField

from db.event_json import JsonFields
from db.pagination import Page
from db.repositories.events import EventRepository
from graph.context import RequestContext
from graph.execution import plain_leaf_plans
from graph.internals import graphql_core_schema_of, strawberry_field_of
from graph.queries import Query, json_events_page, refuse_long_event_id
from graph.serialized import json_attributes, node_json_fields
from graph.types.event import Event
from graph.types.event_filter_input import event_filter_of_coerced

_POINT_READ_FIELD = "event"
_POINT_READ_ARGUMENT = "eventId"
_LIST_FIELD = "events"
_TYPENAME = "__typename"

logger = logging.getLogger("usage_events.plans")

# Fragment definitions of a document by name.
Fragments = Mapping[str, FragmentDefinitionNode]


@dataclass(frozen=True, slots=True)
class EventPlan:
    """`event(eventId: …)` with plain fields: the one field of its operation."""

    # Its answer is one object whatever the variables: its response cost is fixed.
    cost_is_fixed: ClassVar[bool] = True

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


@dataclass(frozen=True, slots=True)
class PageInfoField:
    """A field of a planned page's pageInfo, under its response key."""

    key: str
    name: str
    # Every node merged under the key: an error names all their locations, as GraphQL's.
    nodes: tuple[FieldNode, ...]
    nullable: bool
    # `__typename`'s value, the object type's name; None for PageInfo's own fields.
    constant: str | None = None


@dataclass(frozen=True, slots=True)
class EdgeField:
    """A field of a planned page's edges, under its response key."""

    key: str
    # "cursor", "node" or "__typename".
    name: str
    # `__typename`'s value, the edge type's name; None for the edge's own fields.
    constant: str | None = None


@dataclass(frozen=True, slots=True)
class EventsPlan:
    """`events(…) { nodes { plain fields } pageInfo { … } __typename }`, or with
    `edges { cursor node { plain fields } __typename }` in place of `nodes`: the one
    field of its operation."""

    # `first` and `last` may be variables, which the response-cost bound reads.
    cost_is_fixed: ClassVar[bool] = False

    graphql_schema: GraphQLSchema
    definition: GraphQLField
    operation: OperationDefinitionNode
    field: FieldNode
    response_key: str
    fields: JsonFields
    # (response key, "nodes", "edges", "pageInfo" or "__typename"), in the order of the
    # selection.
    selections: tuple[tuple[str, str], ...]
    # The connection's object type name, the value of its `__typename`.
    typename: str
    # pageInfo's fields, in the order of its selection.
    page_info: tuple[PageInfoField, ...]
    # The edges' fields, in the order of their selection; none when `nodes` is asked.
    edge_fields: tuple[EdgeField, ...] = ()

    async def run(
        self, context: RequestContext, variables: Mapping[str, Any] | None
    ) -> ExecutionResult | None:
        """The result of one request, or None to run it graphql-core's way instead."""
        if not context.serialized_rows:
            return None
        # graphql-core's own coercion: what it refuses, it refuses in its words, unplanned.
        coerced = get_variable_values(
            self.graphql_schema, self.operation.variable_definitions or (), dict(variables or {})
        )
        if isinstance(coerced, list):
            return None
        try:
            arguments = get_argument_values(self.definition, self.field, coerced)
        except GraphQLError:
            return None
        key = self.response_key
        try:  # What Query.events does, for a selection of plain nodes.
            event_filter = event_filter_of_coerced(arguments["filter"])
            if event_filter is None:
                return None  # A metadata filter, which Strawberry converts.
            request = context.page_request(
                arguments["first"], arguments["after"], arguments["last"], arguments["before"]
            )
            page = await json_events_page(
                context, event_filter, arguments["orderBy"], request, self.fields
            )
        except Exception as error:  # `events` is non-null: the null reaches `data`.
            return ExecutionResult(data=None, errors=[located_error(error, [self.field], [key])])
        # Each row's cursor when the edges ask for it, sealed before any field is written
        # (the page keeps them: pageInfo's start and end cursors are not sealed again).
        cursors: list[str] | None = None
        if self.edges_ask_cursor:
            try:
                cursors = page.all_cursors()
            except Exception:  # A bug, not a client's mistake: said, then left to graphql-core.
                # That never happens to a row the database gave (an aware instant, an
                # integer), and graphql-core's way then places the error where GraphQL does.
                logger.exception("a page's cursors could not be sealed by its plan")
                return None
        connection: dict[str, Any] = {}
        errors: list[GraphQLError] = []
        for selection_key, name in self.selections:
            if name == "nodes":
                connection[selection_key] = [orjson.Fragment(text) for text in page.items]
                continue
            if name == "edges":
                connection[selection_key] = self._edges(page, cursors)
                continue
            if name == _TYPENAME:
                connection[selection_key] = self.typename
                continue
            info = await self._page_info(context, page, [key, selection_key], errors)
            if info is None:  # A non-null field failed: null up to `data`, as in GraphQL.
                return ExecutionResult(data=None, errors=errors)
            connection[selection_key] = info
        return ExecutionResult(data={key: connection}, errors=errors or None)

    @property
    def edges_ask_cursor(self) -> bool:
        return any(field.name == "cursor" for field in self.edge_fields)

    def _edges(self, page: Page[str], cursors: list[str] | None) -> list[dict[str, Any]]:
        """The page's edges with their selected fields; `cursors`, each row's, when they
        ask for it."""
        edges: list[dict[str, Any]] = []
        for index, text in enumerate(page.items):
            edge: dict[str, Any] = {}
            for field in self.edge_fields:
                if field.constant is not None:
                    edge[field.key] = field.constant
                elif field.name == "node":
                    edge[field.key] = orjson.Fragment(text)
                else:
                    assert cursors is not None  # edges_ask_cursor
                    edge[field.key] = cursors[index]
            edges.append(edge)
        return edges

    async def _page_info(
        self,
        context: RequestContext,
        page: Page[str],
        path: list[str],
        errors: list[GraphQLError],
    ) -> dict[str, Any] | None:
        """pageInfo's selected fields as graph.types.connection.PageInfo gives them; None
        when a non-null one failed (its error is in `errors`)."""
        values: dict[str, Any] = {}
        for field in self.page_info:
            if field.constant is not None:
                values[field.key] = field.constant
                continue
            try:
                values[field.key] = await _PAGE_INFO_VALUES[field.name](context, page)
            except Exception as error:
                errors.append(located_error(error, list(field.nodes), [*path, field.key]))
                if not field.nullable:
                    return None
                values[field.key] = None
        return values


async def _has_next_page(context: RequestContext, page: Page[str]) -> bool:
    return bool(await context.locked(page.has_next_page)())


async def _has_previous_page(context: RequestContext, page: Page[str]) -> bool:
    return bool(await context.locked(page.has_previous_page)())


async def _start_cursor(_context: RequestContext, page: Page[str]) -> str | None:
    return page.start_cursor


async def _end_cursor(_context: RequestContext, page: Page[str]) -> str | None:
    return page.end_cursor


# graph.types.connection.PageInfo's fields, each as its resolver gives it.
_PAGE_INFO_VALUES: dict[str, Callable[[RequestContext, Page[str]], Awaitable[Any]]] = {
    "hasNextPage": _has_next_page,
    "hasPreviousPage": _has_previous_page,
    "startCursor": _start_cursor,
    "endCursor": _end_cursor,
}


@dataclass(frozen=True, slots=True)
class TypenamePlan:
    """An operation that selects only the root type's `__typename`, under `keys`."""

    # Its answer is the same for every request (it can declare no variables: validation
    # refuses an unused one), so its response cost is bounded once.
    cost_is_fixed: ClassVar[bool] = True

    keys: tuple[str, ...]
    type_name: str

    async def run(
        self, context: RequestContext, variables: Mapping[str, Any] | None
    ) -> ExecutionResult:
        # A new dict each time: what is done with a result is not this plan's business.
        return ExecutionResult(data=dict.fromkeys(self.keys, self.type_name))


QueryPlan = EventPlan | EventsPlan | TypenamePlan


def query_plan(
    schema: strawberry.Schema, document: DocumentNode, operation_name: str | None
) -> QueryPlan | None:
    """The plan of an accepted document's operation, if it has one of the shapes above."""
    if schema.query is not Query:
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY or operation.directives:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    typename_plan = _typename_plan(schema, operation, fragments)
    if typename_plan is not None or len(operation.selection_set.selections) != 1:
        return typename_plan
    field = operation.selection_set.selections[0]
    if (
        not isinstance(field, FieldNode)
        or field.directives
        or field.selection_set is None
        or not _is_plain_root_field(schema, field.name.value)
    ):
        return None
    if field.name.value == _POINT_READ_FIELD:
        return _event_plan(schema, operation, field, fragments)
    if field.name.value == _LIST_FIELD:
        return _events_plan(schema, operation, field, fragments)
    return None


def _typename_plan(
    schema: strawberry.Schema, operation: OperationDefinitionNode, fragments: Fragments
) -> TypenamePlan | None:
    query_type = graphql_core_schema_of(schema).query_type
    assert query_type is not None  # A schema without a Query type is no Strawberry schema.
    collected = _collected_from([operation.selection_set], query_type.name, fragments)
    if not collected or any(
        not _is_leaf(node) or node.name.value != _TYPENAME
        for merged in collected.values()
        for node in merged
    ):
        return None
    return TypenamePlan(tuple(collected), query_type.name)


def _event_plan(
    schema: strawberry.Schema,
    operation: OperationDefinitionNode,
    field: FieldNode,
    fragments: Fragments,
) -> EventPlan | None:
    arguments = field.arguments or ()
    if len(arguments) != 1 or arguments[0].name.value != _POINT_READ_ARGUMENT:
        return None
    argument = _argument_source(operation, arguments[0].value)
    fields = _plain_fields(schema, [field], fragments)
    if argument is None or fields is None:
        return None
    event_id, variable = argument
    return EventPlan(field, _key(field), event_id, variable, fields)


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
    """Whether Query's field `name` is its resolver alone (see `_is_bare`)."""
    return _is_bare(graphql_core_schema_of(schema).query_type.fields.get(name))  # type: ignore[union-attr]


def _is_bare(field: GraphQLField | None) -> bool:
    """Whether `field` is Strawberry's, with no permission classes, field extensions or
    schema directives that a plan would skip."""
    definition = strawberry_field_of(field) if field is not None else None
    return (
        isinstance(definition, StrawberryField)
        and not definition.permission_classes
        and not definition.extensions
        and not definition.directives
    )


def _plain_fields(
    schema: strawberry.Schema, nodes: list[FieldNode], fragments: Fragments
) -> JsonFields | None:
    """The event's (key, attribute) pairs in response order, if every field the event's
    field `nodes` select is a plain field db.event_json writes: one the executor itself
    would only read and coerce (graph.execution), whose value PostgreSQL spells as the API
    does."""
    type_name, json_fields = json_attributes(Event, schema.config.name_converter)
    event_type = graphql_core_schema_of(schema).get_type(type_name)
    assert isinstance(event_type, GraphQLObjectType)
    plain = plain_leaf_plans(event_type)
    attributes = {name: json_fields[name] for name in json_fields.keys() & plain.keys()}
    collected = _collected(nodes, type_name, fragments)
    if collected is None:
        return None
    leaves: list[tuple[str, str]] = []
    for key, merged in collected.items():
        if not all(_is_leaf(leaf) for leaf in merged):
            return None
        leaves.append((key, merged[0].name.value))
    return node_json_fields(leaves, type_name, attributes)


def _events_plan(
    schema: strawberry.Schema,
    operation: OperationDefinitionNode,
    field: FieldNode,
    fragments: Fragments,
) -> EventsPlan | None:
    graphql_schema = graphql_core_schema_of(schema)
    definition = graphql_schema.query_type.fields[_LIST_FIELD]  # type: ignore[union-attr]
    connection_type = get_named_type(definition.type)
    assert isinstance(connection_type, GraphQLObjectType)
    collected = _collected([field], connection_type.name, fragments)
    if collected is None:
        return None
    selections: dict[str, str] = {}
    fields: JsonFields | None = None
    page_info: tuple[PageInfoField, ...] = ()
    edge_fields: tuple[EdgeField, ...] = ()
    for key, merged in collected.items():
        name = merged[0].name.value
        if name == _TYPENAME:
            if not all(_is_leaf(node) for node in merged):
                return None
            selections[key] = _TYPENAME
            continue
        if (
            any(node.arguments for node in merged)
            or name not in ("nodes", "edges", "pageInfo")
            or not _is_bare(connection_type.fields[name])
            # Under two keys: one page, read once, would be two selections of its rows.
            or name in selections.values()
        ):
            return None
        if name == "nodes":
            if fields is not None:
                return None  # Nodes beside edges.
            fields = _plain_fields(schema, merged, fragments)
            if fields is None:
                return None
        elif name == "edges":
            if fields is not None:
                return None
            edge_type = get_named_type(connection_type.fields["edges"].type)
            assert isinstance(edge_type, GraphQLObjectType)
            found_edge = _edge_fields(schema, merged, edge_type, fragments)
            if found_edge is None:
                return None
            edge_fields, fields = found_edge
        else:
            page_info_type = get_named_type(connection_type.fields["pageInfo"].type)
            assert isinstance(page_info_type, GraphQLObjectType)
            found = _page_info_fields(merged, page_info_type, fragments)
            if found is None:
                return None
            page_info = found
        selections[key] = name
    if fields is None:
        return None
    return EventsPlan(
        graphql_schema,
        definition,
        operation,
        field,
        _key(field),
        fields,
        tuple(selections.items()),
        connection_type.name,
        page_info,
        edge_fields,
    )


def _edge_fields(
    schema: strawberry.Schema,
    nodes: list[FieldNode],
    edge_type: GraphQLObjectType,
    fragments: Fragments,
) -> tuple[tuple[EdgeField, ...], JsonFields] | None:
    """The edges' fields by response key and their node's JSON fields, if the edges
    select their `cursor`, `__typename` and `node` under one key with plain fields,
    nothing else."""
    collected = _collected(nodes, edge_type.name, fragments)
    if collected is None:
        return None
    found: list[EdgeField] = []
    fields: JsonFields | None = None
    for key, merged in collected.items():
        name = merged[0].name.value
        if name == "node":
            if fields is not None or not _is_bare(edge_type.fields["node"]):
                return None  # A node under two keys, read once: left to graphql-core.
            fields = _plain_fields(schema, merged, fragments)
            if fields is None:
                return None
            found.append(EdgeField(key, name))
            continue
        if not all(_is_leaf(node) for node in merged) or name not in ("cursor", _TYPENAME):
            return None
        if name == "cursor" and not _is_bare(edge_type.fields["cursor"]):
            return None
        found.append(EdgeField(key, name, edge_type.name if name == _TYPENAME else None))
    if fields is None:
        return None
    return tuple(found), fields


def _page_info_fields(
    nodes: list[FieldNode], page_info_type: GraphQLObjectType, fragments: Fragments
) -> tuple[PageInfoField, ...] | None:
    """pageInfo's fields by response key, if all are its own plain fields."""
    collected = _collected(nodes, page_info_type.name, fragments)
    if collected is None:
        return None
    found: list[PageInfoField] = []
    for key, merged in collected.items():
        name = merged[0].name.value
        if not all(_is_leaf(node) for node in merged):
            return None
        if name == _TYPENAME:
            found.append(
                PageInfoField(
                    key, name, tuple(merged), nullable=False, constant=page_info_type.name
                )
            )
            continue
        if name not in _PAGE_INFO_VALUES or not _is_bare(page_info_type.fields.get(name)):
            return None
        nullable = not isinstance(page_info_type.fields[name].type, GraphQLNonNull)
        found.append(PageInfoField(key, name, tuple(merged), nullable=nullable))
    return tuple(found)


def _collected(
    nodes: list[FieldNode], type_name: str, fragments: Fragments
) -> dict[str, list[FieldNode]] | None:
    """The fields selected by `nodes` (one response key's field nodes, whose selections
    GraphQL merges) on the object type `type_name`: see `_collected_from`. None also if a
    field has no selection."""
    return _collected_from([node.selection_set for node in nodes], type_name, fragments)


def _collected_from(
    selection_sets: list[SelectionSetNode | None], type_name: str, fragments: Fragments
) -> dict[str, list[FieldNode]] | None:
    """The fields `selection_sets` select on the object type `type_name`, by response key
    in the order GraphQL collects them, each with the field nodes merged under it:
    fragment spreads and inline fragments are followed, each named fragment once, as
    GraphQL's CollectFields does. None if a selection has a directive (whose effect may
    depend on variables), a fragment is on another type (an interface, say: left to
    graphql-core) or takes arguments, or a selection set is missing.

    Not graphql-core's collect_subfields: it is marked for internal use only, and it
    applies `@skip`/`@include` with one request's variables, where a plan is made once
    for every request and must refuse directives and other types instead."""
    collected: dict[str, list[FieldNode]] = {}
    visited: set[str] = set()

    def collect(selection_set: SelectionSetNode | None) -> bool:
        if selection_set is None:
            return False
        for selection in selection_set.selections:
            if selection.directives:
                return False
            if isinstance(selection, FieldNode):
                collected.setdefault(_key(selection), []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is not None and condition.name.value != type_name:
                    return False
                if not collect(selection.selection_set):
                    return False
            elif isinstance(selection, FragmentSpreadNode):
                if getattr(selection, "arguments", None):
                    return False
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = fragments.get(name)
                if (
                    fragment is None
                    or fragment.directives
                    or fragment.variable_definitions
                    or fragment.type_condition.name.value != type_name
                    or not collect(fragment.selection_set)
                ):
                    return False
            else:
                return False
        return True

    return collected if all(collect(selections) for selections in selection_sets) else None


def _is_leaf(selection: SelectionNode) -> TypeGuard[FieldNode]:
    """A field with no directives, arguments or selections of its own."""
    return (
        isinstance(selection, FieldNode)
        and not selection.directives
        and not selection.arguments
        and selection.selection_set is None
    )


def _key(field: FieldNode) -> str:
    """The field's response key: its alias, else its name."""
    return field.alias.value if field.alias else field.name.value
