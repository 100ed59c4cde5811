"""Relay connections: one generic shape for every list (customers, events, meters)."""

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import strawberry

from db.pagination import Page

Node = TypeVar("Node")
Item = TypeVar("Item")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[Node]):
    cursor: str
    node: Node


@strawberry.type
class Connection(Generic[Node]):
    edges: list[Edge[Node]]
    page_info: PageInfo
    count_total: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    def nodes(self) -> list[Node]:
        return [edge.node for edge in self.edges]

    @strawberry.field(description="The size of the whole filtered set; counted only when asked.")
    async def total_count(self) -> int:
        return await self.count_total()

    @classmethod
    def from_page(
        cls,
        page: Page[Item],
        to_node: Callable[[Item], Node],
        count_total: Callable[[], Awaitable[int]],
    ) -> "Connection[Node]":
        return cls(
            edges=[Edge(cursor=cursor, node=to_node(item)) for cursor, item in page.edges],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.start_cursor,
                end_cursor=page.end_cursor,
            ),
            count_total=count_total,
        )
