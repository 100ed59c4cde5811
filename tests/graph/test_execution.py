"""The leaf fast path answers exactly what standard execution answers, errors included."""

import asyncio
from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph.execution import LeafFastPathExecutionContext


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    name: str
    count: int
    note: str | None
    color: strawberry.enum(Color)  # type: ignore[valid-type]
    score: float

    @strawberry.field
    async def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    def repeat(self, times: int) -> str:
        return self.name * times


def make_items() -> list[Item]:
    good = Item(name="a", count=1, note=None, color=Color.RED, score=1.5)
    broken = Item(name="b", count=2, note="n", color=Color.BLUE, score=2.0)
    broken.name = None  # type: ignore[assignment]  # a null where the schema forbids one
    wrong_type = Item(name="c", count="many", note="x", color=Color.RED, score=3.0)  # type: ignore[arg-type]
    return [good, broken, wrong_type]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return list(make_items())


def run(context_class: type, query: str) -> dict[str, Any]:
    schema = strawberry.Schema(query=Query, execution_context_class=context_class)
    result = schema.execute_sync(query)
    return {
        "data": result.data,
        "errors": sorted((error.message, tuple(error.path or ())) for error in result.errors or []),
    }


@pytest.mark.parametrize(
    "query",
    [
        "{ items { name count note color score } }",
        "{ items { score color b: name a: count note } }",
        "{ items { name repeat(times: 2) count } }",
        "{ items { count ... on Item { note name } __typename } }",
        "{ items { n1: name n2: name count @skip(if: true) note @include(if: false) } }",
    ],
)
def test_fast_path_matches_standard_execution(query: str) -> None:
    assert run(LeafFastPathExecutionContext, query) == run(
        StrawberryGraphQLCoreExecutionContext, query
    )


def test_fast_path_keeps_field_order_with_async_fields() -> None:
    schema = strawberry.Schema(query=Query, execution_context_class=LeafFastPathExecutionContext)

    async def execute() -> Any:
        return await schema.execute("{ items { count shout name } }")

    result = asyncio.run(execute())
    assert list(result.data["items"][0]) == ["count", "shout", "name"]
    assert result.data["items"][0] == {"count": 1, "shout": "A", "name": "a"}
    assert result.data["items"][1] is None  # its non-null `name` is null: the item is nulled
