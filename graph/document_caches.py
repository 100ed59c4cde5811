"""Parse and validation caches that keep only small documents.

Both caches are shared by every request of a process. A client that sends many large,
distinct documents (1000 events written inline, each body up to the 8 MiB limit) would
otherwise leave hundreds of megabytes of syntax trees in them; documents that big are
parsed afresh instead, which costs that one request what it costs.
"""

from collections.abc import Iterator

from strawberry.extensions import ParserCache, ValidationCache

# Generous for any hand-written query; the frontends' queries are a few hundred bytes.
MAX_CACHED_QUERY_LENGTH = 16 * 1024
CACHED_DOCUMENTS = 256


def is_small(query: str | None) -> bool:
    """Whether a document is small enough to be kept (parsed, validated, prepared)."""
    return query is not None and len(query) <= MAX_CACHED_QUERY_LENGTH


class SmallDocumentParserCache(ParserCache):
    def __init__(self) -> None:
        super().__init__(maxsize=CACHED_DOCUMENTS)

    def on_parse(self) -> Iterator[None]:
        if is_small(self.execution_context.query):
            yield from super().on_parse()
        else:
            yield


class SmallDocumentValidationCache(ValidationCache):
    def __init__(self) -> None:
        super().__init__(maxsize=CACHED_DOCUMENTS)

    def on_validate(self) -> Iterator[None]:
        # A document refused before validation (graph.document_bounds) keeps that answer.
        refused = self.execution_context.pre_execution_errors is not None
        if is_small(self.execution_context.query) and not refused:
            yield from super().on_validate()
        else:
            yield
