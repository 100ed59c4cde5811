"""The one module that relies on Strawberry and graphql-core beyond their public APIs.

Both are pinned to their patch series (pyproject.toml), and tests/graph/test_internals.py
checks every assumption made here, naming it, so an upgrade that moves one of them
fails there instead of quietly changing what the service answers. That includes names
that are not underscored but not documented either (Strawberry's converter back-reference,
graphql-core's middleware manager). Everything else in graph/ uses names the libraries
document or export.
"""

import inspect
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    execute,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from graphql.validation.rules import overlapping_fields_can_be_merged
from graphql.validation.validate import ValidationAbortedError
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import ExecutionContext, get_object_definition
from strawberry.types.arguments import InputContext

from graph.serialized import SerializedNodes

# A plain leaf field: the attribute to read, its type's `coerce_output_value`, and whether
# null is allowed.
LeafPlan = tuple[str, Callable[[Any], Any], bool]

# Values of these exact types are neither exceptions (which graphql-core raises) nor
# awaitables (which it awaits), so the fast path coerces them without asking.
_PLAIN_VALUE_TYPES = frozenset({str, int, float, bool, dict, list, datetime, Decimal})


def limit_field_merge_work(budget: int) -> None:
    """Cap the work of GraphQL's "overlapping fields can be merged" validation rule.

    The rule compares fields of one response name pairwise, recursively; graphql-core
    meters that work and aborts validation once a budget is spent. Its module attribute is
    the documented way to set the budget ("can be raised or lowered by assigning to this
    module attribute"), but it is process-wide, hence here. With its default (500 000) a
    query within every other bound took ≈0.25 s to refuse; with 100 000, ≈0.05 s.
    """
    overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET = budget


def graphql_core_schema(context: ExecutionContext) -> GraphQLSchema:
    """The graphql-core schema Strawberry built, as its own validation cache reads it."""
    schema: GraphQLSchema = context.schema._schema
    return schema


def graphql_core_schema_of(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry built for `schema`."""
    built: GraphQLSchema = schema._schema
    return built


def extensions_hook_resolution(schema: strawberry.Schema) -> bool:
    """Whether any of the schema's extensions overrides `resolve` (resolve middleware)."""
    # The schema holds extension classes and factories; their classes show once made.
    return any(
        type(extension).resolve is not SchemaExtension.resolve
        for extension in schema.get_extensions()
    )


async def execute_accepted(
    schema: strawberry.Schema,
    document: DocumentNode,
    context: Any,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> ExecutionResult:
    """graphql-core's execution of an accepted document (graph.prepared), with the
    arguments Strawberry's `Schema.execute` passes it for a schema whose extensions hook
    no resolution: no middleware, the schema's execution context class, and Strawberry's
    own awaitable check (`optimized_is_awaitable`, a module Strawberry does not export).
    """
    result = execute(
        graphql_core_schema_of(schema),
        document,
        context_value=context,
        variable_values=variables,
        operation_name=operation_name,
        executor_class=schema.execution_context_class,
        is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
    )
    if inspect.isawaitable(result):
        return await result
    return result


def is_field_merge_abort(error: GraphQLError) -> bool:
    """Whether graphql-core gave up validating because the field-merge budget was spent.

    It aborts with the same class for too many errors ("Too many validation errors, …",
    which says so itself) and for a recursion too deep (which graph.document_bounds's
    nesting bound keeps from happening); the budget's abort is the bare message.
    """
    return isinstance(error, ValidationAbortedError) and error.message == "Validation aborted."


def strawberry_field_of(field: GraphQLField) -> object | None:
    """The Strawberry field a graphql-core field was made from, if Strawberry made it."""
    # Undocumented: Strawberry's converter keeps this back-reference in the field's
    # extensions under DEFINITION_BACKREF. Without it no field would qualify as a plain
    # leaf and the fast path would quietly do nothing (tests/graph/test_execution.py
    # checks that the scalar fields of Event do qualify).
    return field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)


def resolution_is_hooked(context: StrawberryGraphQLCoreExecutionContext) -> bool:
    """Whether this execution runs resolve middleware (a schema extension's `resolve`)."""
    # Undocumented: graphql-core keeps the request's middleware in `middleware_manager`;
    # Strawberry passes it every extension that overrides `resolve`.
    middleware = context.middleware_manager
    return middleware is not None and bool(middleware.middlewares)


def operation_name_sent(context: ExecutionContext) -> str | None:
    """The operationName of the request, or None when the client sent none."""
    # Private: Strawberry keeps the name the client sent only in `_provided_operation_name`
    # (the `provided_operation_name` init argument is not kept under its own name), and
    # its public `operation_name` falls back to the document's first operation. Read
    # without a default on purpose: if an upgrade renames it, every request fails loudly
    # rather than every several-operation document being refused or run unasked.
    name: str | None = context._provided_operation_name
    return name


def build_input_with(
    input_type: type, build: Callable[[type, Mapping[str, Any], InputContext], Any]
) -> None:
    """Have Strawberry build arguments of `input_type` with `build`, from the coerced input."""
    # `from_input` is a public field of the type's definition, but it is documented for
    # integrations that create their own definitions (strawberry.pydantic); the
    # `strawberry.input` decorator takes no such argument, so it is set after decoration.
    # If Strawberry stopped consulting it, arguments would be built field by field and
    # the resolver would get an instance without the fields `build` sets.
    get_object_definition(input_type, strict=True).from_input = build


class LeafReadingExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution, except for the fields `leaf_plans` names: read and coerced here.

    Private: `execute_fields` is marked private in graphql-core 3.3 (its signature and
    the shape of `grouped_field_set`, response name → list of `FieldDetails` with a
    `.node`, changed in 3.3 and may change again). If it were no longer called, every
    field would simply go the standard way; if its signature changed, execution breaks.
    For a plain leaf the result is what graphql-core's `execute_field` and
    `complete_value` give: the value coerced by `coerce_output_value`. Every case where
    they would do more — a null where none is allowed, an exception or awaitable as the
    value, a coercion that fails or returns null, an attribute that raises — goes the
    standard way (which reads the attribute once more), so results and errors match.
    """

    def leaf_plans(self, parent_type: GraphQLObjectType) -> Mapping[str, LeafPlan]:
        """The fields of `parent_type`, by name, to read directly; none by default."""
        return {}

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        """A list of objects whose selected fields are all plain leaves (a page's nodes),
        completed in one loop: per item, what `execute_fields` would read for it.

        Private as `execute_fields` is (graphql-core 3.3 marks `complete_iterable_value`
        `:meta private:`). The list goes the standard way, whole, as soon as one item
        would need more than reading: it is null, of another type, or a value of it is.
        """
        if type(items) is SerializedNodes:
            return self._serialized_nodes(item_type, field_details_list, path, items)
        reading = self._object_list_reading(item_type, field_details_list, path, items)
        if reading is not None:
            object_type, fields = reading
            is_type_of = object_type.is_type_of
            completed: list[Any] = []
            for item in cast("list[Any]", items):
                # What graphql-core would report or await: a null, an error, an awaitable.
                if item is None or isinstance(item, Exception) or self.is_awaitable(item):
                    break
                if is_type_of is not None:
                    try:
                        if is_type_of(item, info) is not True:
                            break
                    except Exception:
                        break
                values = _read_leaves(item, fields, self.is_awaitable)
                if values is None:
                    break
                completed.append(values)
            else:
                return completed
        return super().complete_iterable_value(
            item_type, field_details_list, info, path, items, position_context
        )

    def _serialized_nodes(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
        items: SerializedNodes,
    ) -> list[Any]:
        """Nodes PostgreSQL wrote as JSON (graph.serialized), each as it is, once the
        selection being completed is checked to be the one they were written for."""
        reading = self._object_list_reading(item_type, field_details_list, path, items)
        if reading is None:
            raise RuntimeError("serialized nodes where the selection is not plain values")
        object_type, fields = reading
        selected = tuple(
            (response_name, (object_type.name,) if plan is None else plan[0])
            for response_name, _name, plan in fields
        )
        if selected != items.fields:
            raise RuntimeError(f"nodes serialized as {items.fields}, selected as {selected}")
        return [orjson.Fragment(text) for text in items]

    def _object_list_reading(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
        items: Iterable[Any],
    ) -> tuple[GraphQLObjectType, list[tuple[str, str, LeafPlan | None]]] | None:
        """The object type of the items and, per response name, the plan to read it with
        (None for `__typename`), when every selected field is a plain leaf."""
        if not isinstance(items, list) or not isinstance(item_type, GraphQLNonNull):
            return None
        object_type = item_type.of_type
        if not isinstance(object_type, GraphQLObjectType):
            return None
        plans = self.leaf_plans(object_type)
        if not plans or self.get_stream_usage(field_details_list, path) is not None:
            return None
        grouped_field_set, new_defer_usages, _forbidden = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages:
            return None
        fields: list[tuple[str, str, LeafPlan | None]] = []
        for response_name, details in grouped_field_set.items():
            name = details[0].node.name.value
            if name == "__typename":
                fields.append((response_name, object_type.name, None))
                continue
            plan = plans.get(name)
            if plan is None:
                return None
            fields.append((response_name, name, plan))
        return object_type, fields

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plans = self.leaf_plans(parent_type)
        if not plans:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        read: dict[str, Any] = {}
        rest: GroupedFieldSet = {}
        for response_name, field_details_list in grouped_field_set.items():
            plan = plans.get(field_details_list[0].node.name.value)
            if plan is None:
                rest[response_name] = field_details_list
                continue
            value = _read_leaf(source_value, plan, self.is_awaitable)
            if value is _UNREAD:
                # The standard way reports it as graphql-core does.
                rest[response_name] = field_details_list
            else:
                read[response_name] = value
        if not rest:
            return read
        completed = super().execute_fields(parent_type, source_value, path, rest, position_context)
        order = list(grouped_field_set)
        if self.is_awaitable(completed):

            async def merged() -> dict[str, Any]:
                results = {**read, **await completed}
                return {name: results[name] for name in order if name in results}

            return merged()
        results = {**read, **completed}  # type: ignore[dict-item]
        return {name: results[name] for name in order if name in results}


# What _read_leaf gives for a value it leaves to graphql-core's own execution.
_UNREAD = object()


def _read_leaf(source: Any, plan: LeafPlan, is_awaitable: Callable[[Any], bool]) -> Any:
    """The plain leaf `plan` of `source`, coerced as graphql-core's `execute_field` and
    `complete_value` would give it; _UNREAD where they would do more: a null where none
    is allowed, an exception or awaitable as the value, a coercion that fails or gives
    null, an attribute that raises."""
    attribute, coerce, nullable = plan
    try:
        value = getattr(source, attribute)
        if value is None:
            return None if nullable else _UNREAD
        if type(value) not in _PLAIN_VALUE_TYPES and (
            isinstance(value, Exception) or is_awaitable(value)
        ):
            return _UNREAD
        coerced = coerce(value)
    except Exception:
        return _UNREAD
    return _UNREAD if coerced is None or coerced is Undefined else coerced


def _read_leaves(
    item: Any,
    fields: list[tuple[str, str, LeafPlan | None]],
    is_awaitable: Callable[[Any], bool],
) -> dict[str, Any] | None:
    """What execute_fields reads of `item`'s plain leaves, or None where it would not."""
    values: dict[str, Any] = {}
    for response_name, name, plan in fields:
        if plan is None:
            values[response_name] = name  # __typename
            continue
        value = _read_leaf(item, plan, is_awaitable)
        if value is _UNREAD:
            return None
        values[response_name] = value
    return values
