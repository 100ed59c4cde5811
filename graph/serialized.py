"""A page's nodes as JSON text written by PostgreSQL, placed in the response as it is.

When a query asks for `events { nodes { … } }` with plain values only (db.event_json
lists them) and no `edges`, the resolver has PostgreSQL write each node's object with
exactly the selected keys, in order, and returns the texts as `SerializedNodes`. The
execution context (graph.internals) puts them into the result as `orjson.Fragment`s
after checking that the selection it completes is the one they were written for; the
HTTP endpoint's `orjson.dumps` copies them into the body. Nothing turns a row into
Python values and back.

Only the HTTP endpoint asks for it (RequestContext.serialized_rows), on PostgreSQL: a
result holding fragments is meant for orjson, not for a caller of `schema.execute`.
"""

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from strawberry.types import get_object_definition
from strawberry.types.nodes import SelectedField

from db.event_json import EVENT_JSON_VALUES, MAX_JSON_KEYS, Constant, JsonFields
from graph.context import Info

# (response key, EventRecord attribute or the constant of `__typename`), in order.
NodeFields = JsonFields

# Fields of a connection that leave the nodes alone (edges would need a node per cursor).
_BESIDE_NODES = frozenset({"pageInfo", "totalCount", "__typename"})


class SerializedNodes(list[str]):
    """The JSON texts of a page's nodes, each an object of `fields`."""

    __slots__ = ("fields",)

    def __init__(self, texts: Iterable[str], fields: NodeFields) -> None:
        super().__init__(texts)
        self.fields = fields


def serialized_node_fields(info: Info, object_type: type) -> NodeFields | None:
    """What each node's JSON object holds, when the connection field being resolved
    selects its nodes with nothing but plain values of `object_type`; else None."""
    if not info.context.serialized_rows:
        return None
    selected = info.selected_fields
    if len(selected) != 1:
        return None
    nodes: SelectedField | None = None
    for child in selected[0].selections:
        if not isinstance(child, SelectedField) or child.directives:
            return None
        if child.name == "nodes" and nodes is None:
            nodes = child
        elif child.name not in _BESIDE_NODES:
            return None
    if nodes is None:
        return None
    leaves: list[tuple[str, str]] = []
    for leaf in nodes.selections:
        if (
            not isinstance(leaf, SelectedField)
            or leaf.directives
            or leaf.arguments
            or leaf.selections
        ):
            return None
        leaves.append((leaf.alias or leaf.name, leaf.name))
    type_name, attributes = json_attributes(object_type, info.schema.config.name_converter)
    return node_json_fields(leaves, type_name, attributes)


def node_json_fields(
    leaves: Iterable[tuple[str, str]], type_name: str, attributes: Mapping[str, str]
) -> NodeFields | None:
    """A node's JSON fields for its selected leaves, (response key, field name) in
    order: each key once, `__typename` as the constant `type_name`, every other field
    one of `attributes` (GraphQL name → attribute); None if one is not, or if there are
    none or more than PostgreSQL can write."""
    fields: dict[str, str | Constant] = {}
    for key, name in leaves:
        attribute = (type_name,) if name == "__typename" else attributes.get(name)
        if attribute is None:
            return None
        # A key selected again is the same field (validation saw to it): GraphQL merges
        # the two, in the place of the first.
        fields.setdefault(key, attribute)
    if not 0 < len(fields) <= MAX_JSON_KEYS:
        return None
    return tuple(fields.items())


@functools.cache
def json_attributes(object_type: type, name_converter: Any) -> tuple[str, dict[str, str]]:
    """The GraphQL name of `object_type` (its `__typename`), and GraphQL field name →
    attribute for its fields that are plain attributes PostgreSQL can write
    (db.event_json)."""
    definition = get_object_definition(object_type, strict=True)
    return definition.name, {
        name_converter.get_graphql_name(field): field.python_name
        for field in definition.fields
        if field.is_basic_field and field.python_name in EVENT_JSON_VALUES
    }
