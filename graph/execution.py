"""A leaner execution of plain leaf fields, the bulk of every list the API returns.

A page of 100 events selecting 13 scalar fields is 1300 field executions. For each one
graphql-core builds a resolve info, calls Strawberry's wrapper, which calls the default
resolver, checks for awaitables and completes the value through the generic machinery —
several times the cost of reading the attribute and serializing it. For fields that are
nothing more than that (no resolver, no arguments, a scalar or enum type), this
execution context reads the attribute and serializes it directly; every other field, and
any field whose value needs error handling (a null where none is allowed, a value the
scalar refuses), goes the standard way, so the results and errors are the same.
"""

from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    get_named_type,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# A plain leaf: the attribute to read, the serializer, and whether null is allowed.
LeafPlan = tuple[str, Any, bool]

_PLANS_KEY = "usage_events_leaf_plans"


def _leaf_plans(schema: GraphQLSchema, parent_type: GraphQLObjectType) -> dict[str, LeafPlan]:
    """The plain leaf fields of a type, worked out once and kept on the type itself."""
    extensions = parent_type.extensions
    plans: dict[str, LeafPlan] | None = extensions.get(_PLANS_KEY)
    if plans is not None:
        return plans
    plans = {}
    for name, field in parent_type.fields.items():
        definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        named_type = get_named_type(field.type)
        if (
            definition is None
            or field.args
            or not getattr(field.resolve, "_is_default", False)
            or not isinstance(named_type, GraphQLScalarType | GraphQLEnumType)
        ):
            continue
        nullable = not isinstance(field.type, GraphQLNonNull)
        plans[name] = (definition.python_name, named_type.serialize, nullable)
    extensions[_PLANS_KEY] = plans
    return plans


class LeafFastPathExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plans = _leaf_plans(self.schema, parent_type)
        if not plans:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        fast: dict[str, Any] = {}
        rest: GroupedFieldSet = {}
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            plan = plans.get(node.name.value)
            if plan is None or node.arguments:
                rest[response_name] = field_details_list
                continue
            attribute, serialize, nullable = plan
            value = getattr(source_value, attribute, Undefined)
            if value is None and nullable:
                fast[response_name] = None
                continue
            serialized = Undefined
            if value is not None and value is not Undefined:
                try:
                    serialized = serialize(value)
                except Exception:  # the standard path below reports it properly
                    serialized = Undefined
            if serialized is Undefined or serialized is None:
                rest[response_name] = field_details_list
            else:
                fast[response_name] = serialized
        if not rest:
            return fast
        completed = super().execute_fields(parent_type, source_value, path, rest, position_context)
        order = list(grouped_field_set)
        if self.is_awaitable(completed):

            async def merged() -> dict[str, Any]:
                results = {**fast, **await completed}
                return {name: results[name] for name in order if name in results}

            return merged()
        results = {**fast, **completed}  # type: ignore[dict-item]
        return {name: results[name] for name in order if name in results}
