"""A leaner execution of plain leaf fields, the bulk of every list the API returns.

A page of 100 events selecting 13 scalar fields is 1300 field executions. For each one
graphql-core builds a resolve info, calls Strawberry's wrapper, which calls the default
resolver, checks for awaitables and completes the value through the generic machinery —
several times the cost of reading the attribute and coercing it. For fields that are
nothing more than that, this execution context reads the attribute and coerces it
directly (graph/internals.py holds the part that reaches into graphql-core); every other
field, and any value that needs error handling, goes the standard way, so the results
and errors are the same.

A plain leaf is a field Strawberry itself would only read: no resolver, no arguments, no
permission classes, no field extensions, no schema directives, the default resolver
(`getattr`), and a scalar or enum type, not a list. Which fields qualify is worked out
once per type, on first use, and kept on the type. Directives in the query need no
check: `@skip`/`@include` are applied before fields are executed, and Strawberry runs
any other executable directive from a schema extension that hooks resolution, which
turns the fast path off.
"""

from typing import Any

from graphql import GraphQLEnumType, GraphQLNonNull, GraphQLObjectType, GraphQLScalarType
from strawberry.types.field import StrawberryField

from graph.internals import (
    LeafPlan,
    LeafReadingExecutionContext,
    resolution_is_hooked,
    strawberry_field_of,
)

_PLANS_KEY = "usage_events_leaf_plans"


def plain_leaf_plans(parent_type: GraphQLObjectType) -> dict[str, LeafPlan]:
    """The fields of a type that are plain leaves, by name."""
    plans: dict[str, LeafPlan] = {}
    for name, field in parent_type.fields.items():
        definition = strawberry_field_of(field)
        output_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if (
            isinstance(definition, StrawberryField)
            # No resolver and no field extensions (permission classes are one of those).
            # Strawberry's exception handlers never apply here: they match union types.
            and definition.is_basic_field
            and not definition.permission_classes
            and not definition.directives
            and definition.default_resolver is getattr
            and type(definition).get_result is StrawberryField.get_result
            and not field.args
            and isinstance(output_type, GraphQLScalarType | GraphQLEnumType)
        ):
            nullable = output_type is field.type
            plans[name] = (definition.python_name, output_type.coerce_output_value, nullable)
    return plans


class LeafFastPathExecutionContext(LeafReadingExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Once per request, since that is where it is known: Strawberry hands graphql-core
        # the schema extensions that override `resolve` as this request's middleware (the
        # schema holds extension factories, whose classes show only when called), and
        # middleware must see every field, so none is read directly.
        self.resolution_hooked = resolution_is_hooked(self)

    def leaf_plans(self, parent_type: GraphQLObjectType) -> dict[str, LeafPlan]:
        if self.resolution_hooked:
            return {}
        extensions = parent_type.extensions
        plans: dict[str, LeafPlan] | None = extensions.get(_PLANS_KEY)
        if plans is None:
            plans = extensions[_PLANS_KEY] = plain_leaf_plans(parent_type)
        return plans
