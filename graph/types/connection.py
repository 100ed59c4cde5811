"""Relay connections: one generic shape for every list (customers, events, meters).

A connection holds the repository's page and turns it into response values only as far
as the query asks: most ask for `nodes` and never see a cursor, so no row's cursor is
sealed then, and `hasNextPage`/`hasPreviousPage` beyond a cursor given (one more query
each) are looked up only when selected.
"""

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import strawberry

from db.pagination import Page
from graph.serialized import NodeFields, SerializedNodes

Node = TypeVar("Node")
Item = TypeVar("Item")
Result = TypeVar("Result")
# Context.locked: runs a read of the request's read connection while holding it.
Locked = Callable[[Callable[[], Awaitable[Any]]], Callable[[], Awaitable[Any]]]


@strawberry.type
class PageInfo:
    page: strawberry.Private[Page[Any]]
    locked: strawberry.Private[Locked]

    @strawberry.field
    async def has_next_page(self) -> bool:
        return bool(await self.locked(self.page.has_next_page)())

    @strawberry.field
    async def has_previous_page(self) -> bool:
        return bool(await self.locked(self.page.has_previous_page)())

    @strawberry.field
    def start_cursor(self) -> str | None:
        return self.page.start_cursor

    @strawberry.field
    def end_cursor(self) -> str | None:
        return self.page.end_cursor


@strawberry.type
class Edge(Generic[Node]):
    page: strawberry.Private[Page[Any]]
    index: strawberry.Private[int]
    item: strawberry.Private[Node]

    @strawberry.field
    def cursor(self) -> str:
        return self.page.cursor_at(self.index)

    @strawberry.field
    def node(self) -> Node:
        return self.item


@strawberry.type
class Connection(Generic[Node]):
    page: strawberry.Private[Page[Any]]
    to_node: strawberry.Private[Callable[[Any], Any]]
    locked: strawberry.Private[Locked]
    # The page's items are its nodes' JSON texts with these fields (graph.serialized).
    node_fields: strawberry.Private[NodeFields | None] = None

    @strawberry.field
    def edges(self) -> list[Edge[Node]]:
        if self.node_fields is not None:
            raise RuntimeError("a page of serialized nodes has no edges to give")
        return [
            Edge(page=self.page, index=index, item=self.to_node(item))
            for index, item in enumerate(self.page.items)
        ]

    @strawberry.field
    def page_info(self) -> PageInfo:
        return PageInfo(page=self.page, locked=self.locked)

    @strawberry.field
    def nodes(self) -> list[Node]:
        if self.node_fields is not None:
            return SerializedNodes(self.page.items, self.node_fields)  # type: ignore[return-value]
        return [self.to_node(item) for item in self.page.items]

    @strawberry.field(description="The size of the whole filtered set; counted only when asked.")
    async def total_count(self) -> int:
        return int(await self.locked(self.page.count_total)())

    @classmethod
    def from_page(
        cls, page: Page[Item], to_node: Callable[[Item], Node], locked: Locked
    ) -> "Connection[Node]":
        return cls(page=page, to_node=to_node, locked=locked)

    @classmethod
    def from_serialized(
        cls, page: Page[str], node_fields: NodeFields, locked: Locked
    ) -> "Connection[Node]":
        """A connection whose nodes PostgreSQL wrote as JSON texts (graph.serialized)."""
        return cls(page=page, to_node=_no_node, locked=locked, node_fields=node_fields)


def _no_node(text: str) -> Any:
    raise RuntimeError("a serialized node is placed as it is, never turned into an object")
