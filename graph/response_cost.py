"""How large an operation's answer may grow, estimated before it runs.

The other bounds hold the document small; this one holds its answer small. Thirty aliases
of `events(first: 100) { nodes { revisions { reason metadata } } }` are a few hundred
bytes of query and, over a business that amended its events a hundred times, hundreds of
megabytes of answer, built in memory before a byte is sent.

The estimate counts the values of the answer with every list at its bound: a
connection's `nodes` and `edges` at its page size (`first`/`last`, else the default),
an event's `revisions` at the correction limit plus one, usage and volume buckets at
USAGE_EVENTS_MAX_USAGE_POINTS (all series together), userErrors at the batch size,
other lists of objects at OTHER_LIST_ITEMS. A `metadata` (JSON) value counts
JSON_VALUE_WEIGHT, since one may hold fifty keys. Fragments are estimated once each (an
estimate scales with its multiplier).
Introspection is left out: its lists are bounded by the schema itself.
"""

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
)

from db.settings import Settings

# A JSON value (event metadata) stands for this many plain values.
JSON_VALUE_WEIGHT = 20
# Lists of objects the table below does not name (a meter filter's clauses, say).
OTHER_LIST_ITEMS = 10
CONNECTION_LISTS = frozenset({"nodes", "edges"})
PAGED_ARGUMENTS = ("first", "last")


def response_cost_refusal(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    settings: Settings,
) -> str | None:
    """Why the operation's answer could grow too large, or None."""
    operations = [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        and (operation_name is None or _named(definition, operation_name))
    ]
    if len(operations) != 1:
        return None  # None or several to choose from: validation says so.
    [operation] = operations
    root = schema.get_root_type(operation.operation)
    if root is None:
        return None
    estimate = ResponseEstimate(schema, document, variables or {}, settings)
    cost = estimate.selection_set(operation.selection_set, root, page=None)
    if cost <= settings.max_response_cost:
        return None
    return (
        f"The answer to this operation could hold about {cost} values, every list counted "
        f"at its bound (pages at their size, an event's revisions up to "
        f"{settings.correction_limit + 1}); at most {settings.max_response_cost} are "
        "allowed (USAGE_EVENTS_MAX_RESPONSE_COST). Ask for fewer items, fields or aliases."
    )


def _named(operation: OperationDefinitionNode, name: str) -> bool:
    return operation.name is not None and operation.name.value == name


class ResponseEstimate:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: Mapping[str, Any],
        settings: Settings,
    ) -> None:
        self.schema = schema
        self.variables = variables
        self.settings = settings
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        # A fragment's estimate for one instance of its type (page sizes do not cross into
        # fragments: a spread directly under a connection is estimated at the default).
        self.per_fragment: dict[str, int] = {}
        self.list_items = {
            ("Event", "revisions"): settings.correction_limit + 1,
            # Series × buckets ≤ max_usage_points: the buckets' bound holds them all.
            ("MeterUsage", "series"): 1,
            ("UsageSeries", "buckets"): settings.max_usage_points,
            ("EventVolume", "buckets"): settings.max_usage_points,
        }

    def selection_set(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType, page: int | None
    ) -> int:
        if selection_set is None:
            return 0
        cost = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                cost += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                typed = self.schema.get_type(condition.name.value) if condition else parent
                cost += self.selection_set(selection.selection_set, typed or parent, page)
            else:
                assert isinstance(selection, FragmentSpreadNode)
                cost += self.fragment(selection.name.value)
        return cost

    def fragment(self, name: str) -> int:
        if name in self.per_fragment:
            return self.per_fragment[name]
        definition = self.fragments.get(name)
        self.per_fragment[name] = 0  # A cycle (refused before this runs) counts nothing.
        if definition is None:
            return 0  # Unknown: validation says so.
        typed = self.schema.get_type(definition.type_condition.name.value)
        cost = self.selection_set(definition.selection_set, typed, None) if typed else 0
        self.per_fragment[name] = cost
        return cost

    def field(self, node: FieldNode, parent: GraphQLNamedType, page: int | None) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(
            parent, GraphQLObjectType | GraphQLInterfaceType
        ):
            return 1
        definition: GraphQLField | None = parent.fields.get(name)
        if definition is None:
            return 1  # Unknown: validation says so.
        named = get_named_type(definition.type)
        if node.selection_set is None:
            return JSON_VALUE_WEIGHT if named.name == "JSON" else 1
        items = 1
        if isinstance(get_nullable_type(definition.type), GraphQLList):
            items = self.items_of(parent.name, name, page)
        inner_page = self.page_of(node) if named.name.endswith("Connection") else None
        return 1 + items * self.selection_set(node.selection_set, named, inner_page)

    def items_of(self, parent: str, field: str, page: int | None) -> int:
        if field in CONNECTION_LISTS and parent.endswith("Connection"):
            return page if page is not None else self.settings.default_page_size
        if field == "userErrors":
            return self.settings.max_batch_size
        return self.list_items.get((parent, field), OTHER_LIST_ITEMS)

    def page_of(self, node: FieldNode) -> int:
        """The page a connection field asks for; what the server would refuse counts as its
        maximum (the refusal comes when the field runs)."""
        for argument in node.arguments or ():
            if argument.name.value not in PAGED_ARGUMENTS:
                continue
            value: object = None
            if isinstance(argument.value, IntValueNode):
                value = argument.value.value
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value)
            try:
                size = int(str(value))
            except ValueError:
                continue
            return min(max(size, 0), self.settings.max_page_size)
        return self.settings.default_page_size
