"""The leaf fast path answers exactly what standard execution answers, errors included.

Each comparison runs the same document on a schema with `LeafFastPathExecutionContext`
and on one with Strawberry's standard execution context: permission classes, field
extensions, schema extensions and middleware that hook resolution, and `@skip`/`@include`
must behave the same on both, and plain leaf fields must still take the fast path.
"""

import asyncio
from collections.abc import Callable, Iterator
from enum import Enum
from operator import getitem
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType, GraphQLSchema, parse
from graphql import execute_sync as graphql_execute_sync
from strawberry.directive import DirectiveLocation, DirectiveValue
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.permission import BasePermission
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

from db.settings import Settings
from graph.execution import LeafFastPathExecutionContext, plain_leaf_plans
from graph.schema import build_schema

STANDARD = StrawberryGraphQLCoreExecutionContext
FAST = LeafFastPathExecutionContext


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Refusal(Exception):
    """An exception class of its own: graphql-core's String would coerce it with str()."""


class Deny(BasePermission):
    message = "Not allowed."

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


class Shout(FieldExtension):
    def resolve(
        self, next_: Callable[..., Any], source: Any, info: strawberry.Info, **kwargs: Any
    ) -> Any:
        return str(next_(source, info, **kwargs)).upper()


@strawberry.type
class Item:
    name: str
    count: int
    note: str | None
    color: strawberry.enum(Color)  # type: ignore[valid-type]
    score: float
    data: JSON | None = None
    secret: str = strawberry.field(default="s3cret", permission_classes=[Deny])
    maybe_secret: str | None = strawberry.field(default="s3cret", permission_classes=[Deny])
    loud: str = strawberry.field(default="quiet", extensions=[Shout()])

    @strawberry.field
    async def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    def repeat(self, times: int) -> str:
        return self.name * times


def make_items() -> list[Item | None]:
    good = Item(name="a", count=1, note=None, color=Color.RED, score=1.5, data=JSON({"k": [1]}))
    broken = Item(name="b", count=2, note="n", color=Color.BLUE, score=2.0)
    broken.name = None  # type: ignore[assignment]  # a null where the schema forbids one
    wrong_type = Item(name="c", count="many", note="x", color=Color.RED, score=3.0)  # type: ignore[arg-type]
    raising = Item(name="d", count=4, note=None, color=Color.BLUE, score=4.0)
    raising.note = Refusal("refused")  # type: ignore[assignment]  # graphql-core raises it
    return [good, broken, wrong_type, raising]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return make_items()


def make_schema(
    context_class: type, extensions: list[Any] | None = None, **options: Any
) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query, execution_context_class=context_class, extensions=extensions or [], **options
    )


def outcome(result: Any) -> dict[str, Any]:
    return {
        "data": result.data,
        "errors": sorted((error.message, tuple(error.path or ())) for error in result.errors or []),
    }


def run(
    context_class: type,
    query: str,
    variables: dict[str, Any] | None = None,
    extensions: list[Any] | None = None,
) -> dict[str, Any]:
    schema = make_schema(context_class, extensions)
    return outcome(asyncio.run(schema.execute(query, variable_values=variables)))


def graphql_schema_of(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema under a Strawberry one, as its executor is given it."""
    seen: list[GraphQLSchema] = []

    class Capture(STANDARD):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.append(self.schema)

    schema.execution_context_class = Capture
    schema.execute_sync("{ __typename }")
    return seen[0]


@pytest.fixture
def leaf_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fields of Item that went through Strawberry's field resolution, by name."""
    reads: list[str] = []
    original = StrawberryField.get_result

    def counting(self: StrawberryField, *args: Any, **kwargs: Any) -> Any:
        if self.origin is Item:
            reads.append(self.python_name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StrawberryField, "get_result", counting)
    return reads


@pytest.mark.parametrize(
    "query",
    [
        "{ items { name count note color score data } }",
        "{ items { score color b: name a: count note } }",
        "{ items { name repeat(times: 2) count } }",
        "{ items { count ... on Item { note name } __typename } }",
        "{ items { n1: name n2: name count @skip(if: true) note @include(if: false) } }",
    ],
)
def test_fast_path_matches_standard_execution(query: str) -> None:
    assert run(FAST, query) == run(STANDARD, query)


def test_fast_path_keeps_field_order_with_async_fields() -> None:
    schema = make_schema(FAST)

    result = asyncio.run(schema.execute("{ items { count shout name } }"))

    assert result.data is not None
    assert list(result.data["items"][0]) == ["count", "shout", "name"]
    assert result.data["items"][0] == {"count": 1, "shout": "A", "name": "a"}
    assert result.data["items"][1] is None  # its non-null `name` is null: the item is nulled


def test_an_exception_as_a_value_is_raised_on_both_paths() -> None:
    query = "{ items { note } }"

    fast = run(FAST, query)

    assert fast == run(STANDARD, query)
    assert ("refused", ("items", 3, "note")) in fast["errors"]


def test_an_awaitable_value_is_awaited_on_both_paths() -> None:
    async def later() -> dict[str, int]:
        return {"late": 1}

    @strawberry.type
    class Holder:
        data: JSON

    @strawberry.type
    class AwaitingQuery:
        @strawberry.field
        def holders(self) -> list[Holder]:
            return [Holder(data=later())]  # type: ignore[arg-type]

    results = [
        outcome(
            asyncio.run(
                strawberry.Schema(
                    query=AwaitingQuery, execution_context_class=context_class
                ).execute("{ holders { data } }")
            )
        )
        for context_class in (FAST, STANDARD)
    ]

    assert results[0] == results[1] == {"data": {"holders": [{"data": {"late": 1}}]}, "errors": []}


@pytest.mark.parametrize("field", ["secret", "maybeSecret"])
def test_permission_class_denies_on_both_paths(field: str, leaf_reads: list[str]) -> None:
    query = f"{{ items {{ color {field} }} }}"

    fast = run(FAST, query)

    assert fast == run(STANDARD, query)
    assert "s3cret" not in repr(fast["data"])
    assert ("Not allowed.", ("items", 0, field)) in fast["errors"]
    # Denied before Strawberry reads the attribute, on both paths.
    assert not {"secret", "maybe_secret"} & set(leaf_reads)


def test_field_extension_runs_on_both_paths() -> None:
    query = "{ items { loud name } }"

    fast = run(FAST, query)

    assert fast == run(STANDARD, query)
    assert fast["data"]["items"][0] == {"loud": "QUIET", "name": "a"}


def recording_extension(seen: list[tuple[Any, ...]]) -> Callable[[], SchemaExtension]:
    """A schema extension that sees every field resolved and upper-cases every string."""

    class Recorder(SchemaExtension):
        def resolve(
            self, _next: Callable[..., Any], root: Any, info: Any, *args: Any, **kwargs: Any
        ) -> Any:
            seen.append(tuple(info.path.as_list()))
            result = _next(root, info, *args, **kwargs)
            return result.upper() if isinstance(result, str) else result

    return Recorder


def test_a_resolve_hooking_schema_extension_sees_every_field_on_both_paths() -> None:
    query = "{ items { name count note color } }"
    seen_fast: list[tuple[Any, ...]] = []
    seen_standard: list[tuple[Any, ...]] = []

    fast = run(FAST, query, extensions=[recording_extension(seen_fast)])
    standard = run(STANDARD, query, extensions=[recording_extension(seen_standard)])

    assert fast == standard
    assert fast["data"]["items"][3]["name"] == "D"  # the extension changed the value
    assert sorted(seen_fast) == sorted(seen_standard)
    assert ("items", 0, "count") in seen_fast


def test_a_schema_extension_that_does_not_hook_resolution_keeps_the_fast_path(
    leaf_reads: list[str],
) -> None:
    class Quiet(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            yield

    run(FAST, "{ items { color score } }", extensions=[Quiet])

    assert leaf_reads == []


def test_graphql_core_middleware_sees_every_field_on_both_paths() -> None:
    def middleware_for(seen: list[tuple[Any, ...]]) -> Callable[..., Any]:
        def middleware(next_: Callable[..., Any], root: Any, info: Any, **args: Any) -> Any:
            seen.append(tuple(info.path.as_list()))
            result = next_(root, info, **args)
            return result * 2 if isinstance(result, int) else result

        return middleware

    graphql_schema = graphql_schema_of(make_schema(STANDARD))
    seen: dict[type, list[tuple[Any, ...]]] = {FAST: [], STANDARD: []}
    results = {
        context_class: graphql_execute_sync(
            graphql_schema,
            parse("{ items { name count } }"),
            root_value=Query(),
            middleware=[middleware_for(seen[context_class])],
            executor_class=context_class,
        )
        for context_class in (FAST, STANDARD)
    }

    fast = outcome(results[FAST])
    assert fast == outcome(results[STANDARD])
    assert fast["data"]["items"][0] == {"name": "a", "count": 2}  # the middleware doubled it
    assert sorted(seen[FAST]) == sorted(seen[STANDARD])


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ items { name @skip(if: true) count @include(if: true) note } }", None),
        (
            "query($skip: Boolean!, $keep: Boolean!)"
            " { items { name @skip(if: $skip) count @include(if: $keep) score @skip(if: $keep) } }",
            {"skip": True, "keep": True},
        ),
        (
            "query($skip: Boolean!, $keep: Boolean!)"
            " { items { name @skip(if: $skip) count @include(if: $keep) score @skip(if: $keep) } }",
            {"skip": False, "keep": False},
        ),
        (
            "query($keep: Boolean!) { items { count ... on Item @include(if: $keep) { name note }"
            " ...Rest @skip(if: $keep) } } fragment Rest on Item { score color }",
            {"keep": True},
        ),
        (
            "query($keep: Boolean!) { items { count ... on Item @include(if: $keep) { name note }"
            " ...Rest @skip(if: $keep) } } fragment Rest on Item { score color }",
            {"keep": False},
        ),
        ("{ items { name name @skip(if: true) a: count a: count @include(if: false) } }", None),
    ],
)
def test_skip_and_include_match_standard_execution(
    query: str, variables: dict[str, Any] | None
) -> None:
    assert run(FAST, query, variables) == run(STANDARD, query, variables)


def test_a_custom_query_directive_applies_on_both_paths() -> None:
    @strawberry.directive(locations=[DirectiveLocation.FIELD])
    def shouting(value: DirectiveValue[str]) -> str:
        return value.upper()

    query = "{ items { name @shouting count } }"
    results = [
        outcome(make_schema(context_class, directives=[shouting]).execute_sync(query))
        for context_class in (FAST, STANDARD)
    ]

    assert results[0] == results[1]
    assert results[0]["data"]["items"][0] == {"name": "A", "count": 1}


def test_skip_and_include_decide_which_fields_are_answered() -> None:
    query = (
        "query($on: Boolean!) { items { name @skip(if: $on) count @include(if: $on)"
        " note @include(if: false) } }"
    )

    fast = run(FAST, query, {"on": True})

    assert fast["data"]["items"][0] == {"count": 1}


def test_plain_leaf_fields_take_the_fast_path(leaf_reads: list[str]) -> None:
    query = "{ items { name count note color score data } }"

    run(FAST, query)
    fast_reads = list(leaf_reads)
    leaf_reads.clear()
    run(STANDARD, query)

    # Only the values that need error handling (items 1 to 3) go the standard way.
    assert sorted(fast_reads) == ["count", "name", "note"]
    assert set(leaf_reads) == {"name", "count", "note", "color", "score", "data"}


def test_plain_leaf_plans_name_only_plain_leaves() -> None:
    item = graphql_schema_of(make_schema(STANDARD)).get_type("Item")
    assert isinstance(item, GraphQLObjectType)

    plans = plain_leaf_plans(item)

    assert sorted(plans) == ["color", "count", "data", "name", "note", "score"]
    assert plans["name"][0] == "name"
    assert plans["note"][2] is True
    assert plans["name"][2] is False


def test_a_custom_default_resolver_turns_the_fast_path_off() -> None:
    @strawberry.type
    class Row:
        name: str

    @strawberry.type
    class RowsQuery:
        @strawberry.field
        def rows(self) -> list[Row]:
            return [{"name": "from a mapping"}]  # type: ignore[list-item]

    results = [
        outcome(
            strawberry.Schema(
                query=RowsQuery,
                execution_context_class=context_class,
                config=StrawberryConfig(default_resolver=getitem),
            ).execute_sync("{ rows { name } }")
        )
        for context_class in (FAST, STANDARD)
    ]

    assert (
        results[0] == results[1] == {"data": {"rows": [{"name": "from a mapping"}]}, "errors": []}
    )


def test_the_service_schema_reads_every_scalar_field_of_an_event_directly() -> None:
    schema = build_schema(Settings())
    hooked: list[bool] = []

    class Spy(FAST):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            hooked.append(self.resolution_hooked)

    graphql_schema = graphql_schema_of(schema)
    schema.execution_context_class = Spy
    schema.execute_sync("{ __typename }")
    event = graphql_schema.get_type("Event")
    assert isinstance(event, GraphQLObjectType)

    assert hooked == [False]  # none of the service's own extensions hooks resolution
    assert sorted(plain_leaf_plans(event)) == sorted(
        name for name in event.fields if name not in {"customer", "revisions", "backfill"}
    )
