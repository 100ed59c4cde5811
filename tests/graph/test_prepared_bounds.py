"""What graph.prepared keeps, and when it keeps nothing (no database needed)."""

from typing import Any

import strawberry
from graphql import parse
from strawberry.extensions import SchemaExtension

from db.settings import Settings
from graph.http import GraphQLEndpoint
from graph.internals import extensions_hook_resolution
from graph.prepared import AcceptedQuery, PreparedQueries
from graph.schema import build_schema


def kept_document(prepared: PreparedQueries, name: str) -> Any:
    kept = prepared.runnable(f"query {name} {{ __typename }}", None, None)
    return kept.document if kept is not None else None


def test_the_least_recently_used_query_is_dropped_beyond_the_bound() -> None:
    schema = build_schema()
    prepared = PreparedQueries(schema, Settings(), size=2)
    accepted = {name: AcceptedQuery(parse(f"query {name} {{ __typename }}")) for name in "abcd"}
    for name in "abc":
        prepared.remember(f"query {name} {{ __typename }}", None, accepted[name])
    assert prepared.runnable("query a { __typename }", None, None) is None
    assert kept_document(prepared, "b") is accepted["b"].document
    assert kept_document(prepared, "c") is accepted["c"].document
    # b used again, then d accepted: c, used less lately, makes room.
    assert kept_document(prepared, "b") is accepted["b"].document
    prepared.remember("query d { __typename }", None, accepted["d"])
    assert prepared.runnable("query c { __typename }", None, None) is None
    assert kept_document(prepared, "b") is accepted["b"].document
    # Large documents are not kept, as the parse and validation caches keep none.
    large = "query d { __typename }" + " " * 20_000
    prepared.remember(large, None, accepted["a"])
    assert prepared.runnable(large, None, None) is None


def test_a_schema_whose_extensions_hook_resolution_runs_everything_through_strawberry() -> None:
    class Hooking(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            return _next(root, info, *args, **kwargs)

    @strawberry.type
    class Query:
        hello: str = "world"

    hooked = strawberry.Schema(query=Query, extensions=[Hooking])
    assert extensions_hook_resolution(hooked)
    assert not extensions_hook_resolution(build_schema())
    assert not extensions_hook_resolution(strawberry.Schema(query=Query))
    endpoint = GraphQLEndpoint(hooked, None, Settings())  # type: ignore[arg-type]
    assert endpoint.prepared is None


# What each extension of the service's schema overrides. graph.prepared skips them all for
# a query accepted before, which is right only for hooks that act before execution (on
# parsing, validation, and on_operation's set-up of both) or that merely note the
# document (NoteAcceptedDocument). An extension added with other hooks (one that changes
# results in on_execute or get_results, say) must be considered there first.
ACTING_BEFORE_EXECUTION = {
    "TagRequestErrors": ["on_parse", "on_validate"],
    "MaxTokensLimiter": ["on_operation"],
    "AddValidationRules": ["on_operation"],
    "SmallDocumentParserCache": ["on_parse"],
    "BoundDocumentCostExtension": ["on_validate"],
    "SmallDocumentValidationCache": ["on_validate"],
    "RequireOperationName": ["on_validate"],
    "NoteAcceptedDocument": ["on_execute"],
}
HOOKS = ("on_operation", "on_parse", "on_validate", "on_execute", "get_results", "resolve")


def test_every_extension_the_prepared_way_skips_acts_before_execution() -> None:
    found = {
        type(extension).__name__: [
            hook
            for hook in HOOKS
            if getattr(type(extension), hook) is not getattr(SchemaExtension, hook)
        ]
        for extension in build_schema().get_extensions()
    }
    assert found == ACTING_BEFORE_EXECUTION, (
        "the schema's extensions changed: check that graph/prepared.py may still skip them"
    )
