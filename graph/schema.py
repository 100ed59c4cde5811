"""The Strawberry schema, with the bounds every request is held to (SPEC §9)."""

from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from db.settings import Settings
from graph.errors import TagRequestErrors
from graph.mutations.root import Mutation
from graph.queries import Query
from graph.scalars import DateTime
from graph.types.business import Business
from graph.types.customer import Customer
from graph.types.event import Event


class UsageEventsSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # graph.errors.format_error logs the unexpected ones; client mistakes are not logged.
        return None


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # Factories, not instances: Strawberry builds fresh extensions for every request.
    extensions: list[Any] = [
        TagRequestErrors,
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
        # Introspection fields (`__schema`, …) are not counted: GraphiQL's query is deep.
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    return UsageEventsSchema(
        query=Query,
        mutation=Mutation,
        types=[Business, Customer, Event],
        extensions=extensions,
        config=StrawberryConfig(scalar_map={datetime: DateTime}),
    )
