"""What a query document may cost, measured before validation in time linear in its size.

Fragment spreads let a short document stand for an enormous one: `{...F0}` with
`fragment F0 on Query {...F1 ...F1}` … 25 levels deep is a kilobyte of text and 2^25
fields once expanded. graphql-core's validation rules and Strawberry's depth and alias
limiters walk a document with its fragments expanded, spread by spread, so such a
document pinned a worker for minutes inside the very limiters meant to refuse it.

Here each fragment is measured once and its measure reused at every spread (memoised),
so the expanded size of every operation, and how often one response name repeats in one
selection set, are known after one pass over the document, whatever its fragment
structure. A document beyond a bound is refused with a message naming the bound; only
documents within the bounds go on to validation (the depth and alias limiters among its
rules), whose cost is then bounded by theirs. Fragment cycles are refused here too, with
the message of GraphQL's own rule, since the limiters would loop through them.

Repeats are bounded because GraphQL's rule that overlapping fields can be merged
compares the fields of one response name pairwise: `{ viewer{id} viewer{id} … }` 500
times took 1.5 s to validate. graphql-core also meters that rule's work and aborts it
past a budget, lowered here (graph.internals.limit_field_merge_work), and its bare
"Validation aborted." is replaced with a message that says why.
"""

import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from graphql import (
    BREAK,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    visit,
)
from strawberry.extensions import SchemaExtension

from db.settings import Settings
from graph.errors import VALIDATION_FAILED
from graph.internals import (
    graphql_core_schema,
    is_field_merge_abort,
    limit_field_merge_work,
    operation_name_sent,
)
from graph.response_cost import response_cost_refusal

# A refusal here is a validation failure like those of the depth and alias limiters; its
# message says which bound refused the document, and the setting that sets it.


@dataclass(frozen=True, slots=True)
class Measure:
    """A selection set with every fragment spread expanded."""

    fields: int
    # The response names of this selection set itself, with how often each is selected.
    names: Counter[str] = field(default_factory=Counter)


_EMPTY = Measure(0)

# Selection sets nested in selection sets, and spreads of fragments that spread others,
# beyond any depth a query needs (the depth limiter allows 15 fields): the measure itself
# recurses once per level and must not run out of stack.
MAX_NESTING = 100


class TooCostly(Exception):
    """The document is beyond a bound; the message says which."""


class DocumentMeasurer:
    """Measures one document's selection sets, each fragment once, within a budget.

    Every field counted, in every operation and fragment with its spreads expanded, is
    spent from one budget of `max_fields` for the whole document, and measuring stops the
    moment it is spent or a response name repeats beyond `max_repeats`: the measure itself
    costs at most that budget (each spread merges at most as many names as it spends).
    """

    def __init__(self, document: DocumentNode, max_fields: int, max_repeats: int) -> None:
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self.max_fields = max_fields
        self.max_repeats = max_repeats
        self.spent = 0
        self.measured: dict[str, Measure] = {}
        self.in_progress: list[str] = []

    def measure(self, document: DocumentNode) -> None:
        """Raises TooCostly if the document is beyond a bound."""
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                self.selection_set(definition.selection_set, 0)
        for name in self.fragments:  # Fragments no operation uses are validated too.
            self.fragment(name, 0)

    def selection_set(self, selection_set: SelectionSetNode | None, nesting: int) -> Measure:
        if selection_set is None:
            return _EMPTY
        if nesting > MAX_NESTING:
            raise TooCostly(
                f"The document nests selections or fragment spreads more than {MAX_NESTING} "
                "levels deep."
            )
        fields = 0
        names: Counter[str] = Counter()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.spend(1)  # Its own selections are spent as they are measured.
                below = self.selection_set(selection.selection_set, nesting + 1)
                fields += 1 + below.fields
                names[(selection.alias or selection.name).value] += 1
                continue
            if isinstance(selection, InlineFragmentNode):
                below = self.selection_set(selection.selection_set, nesting + 1)
            else:
                assert isinstance(selection, FragmentSpreadNode)
                below = self.fragment(selection.name.value, nesting + 1)
                # Measured once, but expanded (and validated) at every spread; spent before
                # its names are merged, a merge costing at most as much.
                self.spend(below.fields)
            fields += below.fields
            names.update(below.names)
        if names and (repeats := max(names.values())) > self.max_repeats:
            raise TooCostly(
                f"The document selects one field {repeats} times in one selection set once "
                f"its fragments are expanded; at most {self.max_repeats} are allowed "
                "(USAGE_EVENTS_MAX_REPEATED_FIELDS)."
            )
        return Measure(fields, names)

    def fragment(self, name: str, nesting: int) -> Measure:
        if (known := self.measured.get(name)) is not None:
            return known
        definition = self.fragments.get(name)
        if definition is None:  # Unknown: validation reports it (KnownFragmentNames).
            return _EMPTY
        if name in self.in_progress:
            # GraphQL's own rule (NoFragmentCycles) says it so; the limiters would loop.
            raise TooCostly(f'Cannot spread fragment "{name}" within itself.')
        self.in_progress.append(name)
        measure = self.selection_set(definition.selection_set, nesting)
        self.in_progress.pop()
        self.measured[name] = measure
        return measure

    def spend(self, fields: int) -> None:
        self.spent += fields
        if self.spent > self.max_fields:
            raise TooCostly(
                f"The document selects more than {self.max_fields} fields once its fragment "
                "spreads are expanded, counting every operation and fragment "
                "(USAGE_EVENTS_MAX_QUERY_FIELDS)."
            )


def document_refusal(document: DocumentNode, settings: Settings) -> GraphQLError | None:
    """Why the document is too costly to validate and run, or None when it is within bounds."""
    measurer = DocumentMeasurer(document, settings.max_query_fields, settings.max_repeated_fields)
    try:
        measurer.measure(document)
    except TooCostly as refusal:
        return _refusal(str(refusal))
    return None


# Python reads at most this many digits into an int (sys.get_int_max_str_digits); graphql-
# core turns a longer literal in a JSON value into NaN, which the rules then called "NaN".
_INT_DIGITS = sys.get_int_max_str_digits() or 4300
# A run of digits longer than that, found from its start only (a plain search would retry
# at every position inside a long run that falls one digit short).
_TOO_MANY_DIGITS = re.compile(rf"(?<![0-9])[0-9]{{{_INT_DIGITS + 1}}}")


class _FindHugeInteger(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: IntValueNode | None = None

    def enter_int_value(self, node: IntValueNode, *_args: object) -> object:
        if len(node.value.lstrip("-")) > _INT_DIGITS:
            self.found = node
            return BREAK
        return None


def huge_integer_refusal(query: str, document: DocumentNode) -> GraphQLError | None:
    """An integer literal too long for any integer type, said as such.

    Only documents with such a run of digits are walked: a cheap search finds none in
    almost every document (a long string of digits costs one walk, then passes).
    """
    if not _TOO_MANY_DIGITS.search(query):
        return None
    finder = _FindHugeInteger()
    visit(document, finder)
    if finder.found is None:
        return None
    return GraphQLError(
        f"An integer literal has {len(finder.found.value.lstrip('-'))} digits; integers here "
        "fit in 64 bits (19 digits).",
        nodes=[finder.found],
        extensions={"code": VALIDATION_FAILED},
    )


def _refusal(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": VALIDATION_FAILED})


def bounded_document_cost(settings: Settings) -> type[SchemaExtension]:
    """The extension class that refuses, before validation, documents beyond the bounds.

    It must come before the validation cache among the schema's extensions: an error set
    here means validation never starts.
    """

    # Work units graphql-core may spend comparing fields that share a response name
    # before it aborts validation; process-wide, set here where the settings are known.
    limit_field_merge_work(settings.max_validation_work)

    class BoundDocumentCostExtension(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            context = self.execution_context
            document = context.graphql_document
            if document is not None and context.pre_execution_errors is None:
                refusal = document_refusal(document, settings) or huge_integer_refusal(
                    context.query or "", document
                )
                if refusal is None and (
                    too_large := response_cost_refusal(
                        graphql_core_schema(context),
                        document,
                        operation_name_sent(context),
                        context.variables,
                        settings,
                    )
                ):
                    refusal = _refusal(too_large)
                if refusal is not None:
                    context.pre_execution_errors = [refusal]
            yield
            # graphql-core's bare "Validation aborted." (its field-merge budget spent), said
            # so that a client knows why; the errors found before it stay. In place:
            # Strawberry has already taken the list for its answer by now.
            errors = context.pre_execution_errors or []
            for index, error in enumerate(errors):
                if is_field_merge_abort(error):
                    errors[index] = _refusal(
                        "The query is too costly to validate: fields that share a response "
                        "name are compared pairwise, and this document's comparisons "
                        f"exceed {settings.max_validation_work} units of work "
                        "(USAGE_EVENTS_MAX_VALIDATION_WORK). Give repeated fields aliases, "
                        "or send fewer of them."
                    )

    return BoundDocumentCostExtension
