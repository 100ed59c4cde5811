"""What graph/internals.py relies on in Strawberry and graphql-core, checked one by one.

A failure here means an upgrade of strawberry-graphql or graphql-core moved something
the service reaches into; the message names it and what to look at in graph/internals.py.
"""

import inspect
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import strawberry
from graphql import FieldNode, GraphQLObjectType
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionResult
from strawberry.types.arguments import InputContext

from graph.internals import (
    LeafPlan,
    LeafReadingExecutionContext,
    build_input_with,
    operation_name_sent,
)

UPGRADE = "an upgrade of strawberry-graphql or graphql-core changed it; see graph/internals.py"


@strawberry.type
class Pair:
    left: str
    right: str


@strawberry.type
class Query:
    @strawberry.field
    def pairs(self) -> list[Pair]:
        return [Pair(left="l1", right="r1"), Pair(left="l2", right="r2")]


def test_execute_fields_keeps_the_signature_it_is_overridden_with() -> None:
    parameters = list(
        inspect.signature(StrawberryGraphQLCoreExecutionContext.execute_fields).parameters
    )

    assert parameters == [
        "self",
        "parent_type",
        "source_value",
        "path",
        "grouped_field_set",
        "position_context",
    ], f"graphql-core's Executor.execute_fields now takes {parameters}: {UPGRADE}"


def test_execute_fields_gets_every_object_with_field_details_by_response_name() -> None:
    calls: list[tuple[str, dict[str, list[str]]]] = []

    class Spy(LeafReadingExecutionContext):
        def execute_fields(
            self,
            parent_type: GraphQLObjectType,
            source_value: Any,
            path: Any,
            grouped_field_set: Any,
            position_context: Any,
        ) -> Any:
            calls.append(
                (
                    parent_type.name,
                    {
                        response_name: [
                            details.node.name.value
                            for details in field_details_list
                            if isinstance(details.node, FieldNode)
                        ]
                        for response_name, field_details_list in grouped_field_set.items()
                    },
                )
            )
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )

    schema = strawberry.Schema(query=Query, execution_context_class=Spy)

    result = schema.execute_sync("{ pairs { l: left right ... on Pair { right } } }")

    assert result.errors is None
    expected = {"l": ["left"], "right": ["right", "right"]}
    assert calls == [("Query", {"pairs": ["pairs"]}), ("Pair", expected), ("Pair", expected)], (
        "graphql-core no longer executes each object's fields through execute_fields with "
        f"response name → [FieldDetails(node=FieldNode, …)]: {UPGRADE}"
    )


def test_leaf_plans_decide_what_execute_fields_reads() -> None:
    class ReadRightForLeft(LeafReadingExecutionContext):
        def leaf_plans(self, parent_type: GraphQLObjectType) -> Mapping[str, LeafPlan]:
            return {"left": ("right", str, False)} if parent_type.name == "Pair" else {}

    schema = strawberry.Schema(query=Query, execution_context_class=ReadRightForLeft)

    result = schema.execute_sync("{ pairs { left right } }")

    assert result.data == {
        "pairs": [{"left": "r1", "right": "r1"}, {"left": "r2", "right": "r2"}]
    }, (
        "Strawberry no longer runs its execution context class's execute_fields for object "
        f"fields (execution_context_class → graphql-core's executor_class): {UPGRADE}"
    )


def test_only_the_operation_name_a_client_sent_is_reported() -> None:
    seen: list[tuple[str | None, str | None]] = []

    class Record(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            context = self.execution_context
            seen.append((operation_name_sent(context), context.operation_name))
            yield

    schema = strawberry.Schema(query=Query, extensions=[Record])
    document = "query First { pairs { left } } query Second { pairs { right } }"

    schema.execute_sync(document, operation_name="Second")
    schema.execute_sync(document)

    assert seen == [("Second", "Second"), (None, "First")], (
        "Strawberry's ExecutionContext._provided_operation_name no longer holds exactly the "
        f"operationName the client sent (and operation_name its fallback): {UPGRADE}"
    )


def test_from_input_builds_the_argument_from_the_coerced_input() -> None:
    calls: list[tuple[type, dict[str, Any], tuple[str | int, ...]]] = []

    @strawberry.input
    class Window:
        first_day: int
        last_day: int
        length: strawberry.Private[int]

    def build(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        calls.append((cls, dict(value), context.path))
        window: Any = object.__new__(cls)
        window.length = value["lastDay"] - value["firstDay"] + 1
        return window

    build_input_with(Window, build)

    @strawberry.type
    class WindowQuery:
        @strawberry.field
        def length(self, window: Window) -> int:
            return window.length

    schema = strawberry.Schema(query=WindowQuery)

    inline = schema.execute_sync("{ length(window: {firstDay: 3, lastDay: 9}) }")
    variables = schema.execute_sync(
        "query($w: Window!) { length(window: $w) }",
        variable_values={"w": {"firstDay": 1, "lastDay": 1}},
    )

    assert (inline.data, variables.data) == ({"length": 7}, {"length": 1}), (
        "Strawberry no longer builds input arguments with the definition's from_input "
        f"hook: {UPGRADE}"
    )
    assert calls == [
        (Window, {"firstDay": 3, "lastDay": 9}, ("window",)),
        (Window, {"firstDay": 1, "lastDay": 1}, ("window",)),
    ], (
        "Strawberry's from_input hook is no longer called with (class, the input keyed by "
        f"GraphQL names, InputContext): {UPGRADE}"
    )


def test_schema_extensions_that_override_resolve_are_the_middleware_graphql_core_gets() -> None:
    middleware: list[tuple[str, ...]] = []

    class Hooking(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            return _next(root, info, *args, **kwargs)

    class NotHooking(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            yield

    class Spy(StrawberryGraphQLCoreExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            manager = self.middleware_manager
            names = () if manager is None else manager.middlewares
            middleware.append(tuple(type(each).__name__ for each in names))

    for extensions in ([NotHooking], [NotHooking, Hooking]):
        schema = strawberry.Schema(query=Query, extensions=extensions, execution_context_class=Spy)
        schema.execute_sync("{ pairs { left } }")

    assert middleware == [(), ("Hooking",)], (
        "Strawberry no longer hands exactly the schema extensions that override resolve to "
        "graphql-core as the executor's middleware_manager.middlewares, which is how "
        f"graph/execution.py knows to turn the leaf fast path off: {UPGRADE}"
    )


def test_the_field_merge_budget_is_graphql_cores_and_its_abort_is_recognised() -> None:
    from graphql import parse, validate
    from graphql.validation import OverlappingFieldsCanBeMergedRule
    from graphql.validation.rules import overlapping_fields_can_be_merged

    from graph.internals import is_field_merge_abort, limit_field_merge_work

    assert hasattr(overlapping_fields_can_be_merged, "MAX_COMPLEXITY_BUDGET"), (
        "graphql-core no longer meters the overlapping-fields rule with MAX_COMPLEXITY_BUDGET, "
        f"which graph.document_bounds lowers: {UPGRADE}"
    )
    schema = strawberry.Schema(query=Query)._schema
    repeated = "{" + " pairs { left right }" * 20 + " }"
    before = overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET
    try:
        limit_field_merge_work(10)
        errors = validate(schema, parse(repeated), [OverlappingFieldsCanBeMergedRule])
        assert [is_field_merge_abort(error) for error in errors] == [True], (
            "graphql-core no longer aborts validation with ValidationAbortedError once the "
            f"budget set by limit_field_merge_work is spent: {UPGRADE}"
        )
        limit_field_merge_work(1_000_000)
        assert validate(schema, parse(repeated), [OverlappingFieldsCanBeMergedRule]) == []
    finally:
        limit_field_merge_work(before)


def test_strawberry_hands_its_graphql_core_schema_to_extensions() -> None:
    from graphql import GraphQLSchema

    from graph.internals import graphql_core_schema, graphql_core_schema_of

    seen: list[object] = []

    class Looking(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            seen.append(graphql_core_schema(self.execution_context))
            yield

    schema = strawberry.Schema(query=Query, extensions=[Looking])
    schema.execute_sync("{ pairs { left } }")
    [found] = seen
    assert isinstance(found, GraphQLSchema), (
        "Strawberry's ExecutionContext.schema no longer carries its graphql-core schema as "
        f"`_schema`, which graph/response_cost.py estimates answers over: {UPGRADE}"
    )
    assert found.query_type is not None
    assert found.query_type.name == "Query"
    assert found is graphql_core_schema_of(schema), (
        "Strawberry's Schema no longer keeps the graphql-core schema it executes as "
        f"`_schema`, which graph/prepared.py executes accepted queries over: {UPGRADE}"
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_strawberry_gives_graphql_core_the_arguments_accepted_queries_get(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """graph.internals.execute_accepted passes graphql-core's `execute` what Strawberry's
    `Schema.execute` passes it; if Strawberry passed anything more, or other values, the
    prepared way (graph/prepared.py) would run queries differently."""
    import graphql
    import strawberry.schema.schema as strawberry_schema
    from strawberry.execution.is_awaitable import optimized_is_awaitable

    from graph.internals import execute_accepted

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    original = graphql.execute

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    schema = strawberry.Schema(query=Query, execution_context_class=LeafReadingExecutionContext)
    context = object()
    # Strawberry's schema module calls the `execute` it imported from graphql-core.
    monkeypatch.setattr(strawberry_schema, "execute", spy)
    variables = {"unused": 1}
    through_strawberry = await schema.execute(
        "query P { pairs { left } }",
        variable_values=variables,
        context_value=context,
        operation_name="P",
    )
    monkeypatch.undo()
    [(args, kwargs)] = calls
    middleware = kwargs.pop("middleware")
    assert (len(args), sorted(kwargs)) == (
        2,
        [
            "context_value",
            "executor_class",
            "is_awaitable",
            "operation_extensions",
            "operation_name",
            "root_value",
            "variable_values",
        ],
    ), f"Strawberry now executes with {sorted(kwargs)}: {UPGRADE}"
    assert kwargs["executor_class"] is LeafReadingExecutionContext, UPGRADE
    assert kwargs["is_awaitable"] is optimized_is_awaitable, UPGRADE
    assert kwargs["root_value"] is None, UPGRADE
    assert kwargs["operation_extensions"] is None, UPGRADE
    assert kwargs["context_value"] is context, UPGRADE
    assert kwargs["variable_values"] is variables, UPGRADE
    assert kwargs["operation_name"] == "P", UPGRADE
    assert not middleware.middlewares, UPGRADE

    prepared = await execute_accepted(schema, args[1], context, variables, "P")
    assert (prepared.data, prepared.errors) == (through_strawberry.data, through_strawberry.errors)
    assert prepared.data == {"pairs": [{"left": "l1"}, {"left": "l2"}]}


def test_complete_iterable_value_keeps_the_signature_it_is_overridden_with() -> None:
    parameters = list(
        inspect.signature(StrawberryGraphQLCoreExecutionContext.complete_iterable_value).parameters
    )

    assert parameters == [
        "self",
        "item_type",
        "field_details_list",
        "info",
        "path",
        "items",
        "position_context",
    ], f"graphql-core's Executor.complete_iterable_value now takes {parameters}: {UPGRADE}"


class ReadPairs(LeafReadingExecutionContext):
    """Pair's fields are plain leaves; counts the objects completed the standard way."""

    standard: ClassVar[list[str]] = []

    def leaf_plans(self, parent_type: GraphQLObjectType) -> Mapping[str, LeafPlan]:
        if parent_type.name != "Pair":
            return {}
        return {"left": ("left", str, False), "right": ("right", str, False)}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Any,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        self.standard.append(parent_type.name)
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )


def test_a_list_of_plain_leaf_objects_is_read_in_one_loop() -> None:
    ReadPairs.standard = []
    schema = strawberry.Schema(query=Query, execution_context_class=ReadPairs)

    result = schema.execute_sync("{ pairs { r: right left __typename l: left } }")

    assert result.errors is None
    assert result.data == {
        "pairs": [
            {"r": "r1", "left": "l1", "__typename": "Pair", "l": "l1"},
            {"r": "r2", "left": "l2", "__typename": "Pair", "l": "l2"},
        ]
    }
    assert list(result.data["pairs"][0]) == ["r", "left", "__typename", "l"]
    assert ReadPairs.standard == ["Query"], (
        "graphql-core no longer completes a list through complete_iterable_value, or "
        f"collect_subfields no longer gives (grouped field set, defer usages, …): {UPGRADE}"
    )


@strawberry.type
class BrokenQuery:
    @strawberry.field
    def pairs(self) -> list[Pair]:
        return [Pair(left="l1", right="r1"), Pair(left="l2", right=None)]  # type: ignore[arg-type]


def fast_and_standard(query: type, document: str) -> tuple[ExecutionResult, ExecutionResult]:
    """`document` executed with ReadPairs and with graphql-core's own execution."""
    ReadPairs.standard = []
    fast = strawberry.Schema(query=query, execution_context_class=ReadPairs)
    standard = strawberry.Schema(query=query)
    return fast.execute_sync(document), standard.execute_sync(document)


def assert_same(result: ExecutionResult, expected: ExecutionResult) -> None:
    assert result.data == expected.data
    assert [error.formatted for error in result.errors or []] == [
        error.formatted for error in expected.errors or []
    ]


def test_a_list_with_an_item_to_report_goes_the_standard_way_whole() -> None:
    result, expected = fast_and_standard(BrokenQuery, "{ pairs { left right } }")

    assert_same(result, expected)
    assert result.errors, "a null in a non-null field is an error"
    assert ReadPairs.standard == ["BrokenQuery", "Pair", "Pair"]


@strawberry.type
class NullItemQuery:
    @strawberry.field
    def pairs(self) -> list[Pair]:
        return [Pair(left="l1", right="r1"), None]  # type: ignore[list-item]


def test_a_null_item_goes_the_standard_way_even_when_no_field_is_read() -> None:
    result, expected = fast_and_standard(NullItemQuery, "{ pairs { __typename } }")

    assert_same(result, expected)
    assert result.errors, "a null item of a list of non-null objects is an error"
