"""The Strawberry schema, with the bounds every request is held to (SPEC §9)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from db.settings import Settings
from graph.document_bounds import bounded_document_cost
from graph.document_caches import SmallDocumentParserCache, SmallDocumentValidationCache
from graph.errors import TagRequestErrors
from graph.execution import LeafFastPathExecutionContext
from graph.mutations.root import Mutation
from graph.operation_choice import RequireOperationName
from graph.prepared import NoteAcceptedDocument
from graph.queries import Query
from graph.scalars import DateTime, ExactDecimal
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
    # Strawberry builds extensions afresh for every request (hence factories), but the
    # validation rules must be the same classes every time: ValidationCache keys its
    # shared cache on them, and rules made anew per request would never hit it.
    bounds = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]
    extensions: list[Any] = [
        TagRequestErrors,
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: AddValidationRules(bounds),
        SmallDocumentParserCache,
        # Before validation (and its cache): a document beyond the bounds is never validated.
        bounded_document_cost(settings),
        SmallDocumentValidationCache,
        # After the validation cache, whose hook would overwrite the error it sets.
        RequireOperationName,
        # Last: execution begins once every extension before it has let the query pass.
        NoteAcceptedDocument,
    ]
    return UsageEventsSchema(
        query=Query,
        mutation=Mutation,
        types=[Business, Customer, Event],
        extensions=extensions,
        config=StrawberryConfig(scalar_map={datetime: DateTime, Decimal: ExactDecimal}),
        execution_context_class=LeafFastPathExecutionContext,
    )
