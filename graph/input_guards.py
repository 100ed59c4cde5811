"""Refuse the NUL character (U+0000) anywhere in a request.

PostgreSQL cannot store U+0000 in text or jsonb, and no identifier, name or metadata value
has a use for it; refusing it at the door keeps both databases answering alike instead
of one storing it and the other failing deep inside a query.
"""

import re
from typing import Any

# A JSON escape \u0000 that is not itself an escaped backslash followed by "u0000".
_JSON_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# GraphQL string literals spell it \u0000 or, since the 2021 spec, \u{0}.
_GRAPHQL_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u(?:0000|\{0+\})")


def body_may_hold_nul(raw: bytes) -> bool:
    """A cheap scan of the raw JSON body; only a hit makes the parsed payload worth walking."""
    if b"\x00" in raw:
        return True
    # A plain substring search is many times faster than the regex; most bodies stop here.
    return b"\\u0000" in raw and _JSON_ESCAPED_NUL.search(raw) is not None


def nul_location(payload: Any, query: str) -> str | None:
    """Where a NUL character stands in the request, as a dotted path, or None."""
    # The substring search first: far cheaper than the regex, and most queries stop there.
    if "\x00" in query or ("\\u" in query and _GRAPHQL_ESCAPED_NUL.search(query)):
        return "query"
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "request"
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return f"{path}.{key!r}".lstrip(".")
                stack.append((f"{path}.{key}".lstrip("."), item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{index}", item) for index, item in enumerate(value))
    return None


def variables_refusal(variables: Any, max_depth: int, max_values: int) -> str | None:
    """Why the variables are beyond the bounds of a request, or None.

    Input coercion and conversion recurse once per level, so a request nested thousands
    deep would exhaust the interpreter's stack instead of getting a clear answer; and they
    visit every value, so eight megabytes of `[1,1,1,…]` (four million values) would
    cost seconds for a variable that might not even be used. One level at a time,
    counting as it goes, so a 1000-event batch costs well under a millisecond.
    """
    level: list[Any] = [variables]
    depth = values = 0
    while level:
        depth += 1
        if depth > max_depth:
            return f"variables nest deeper than {max_depth} levels (USAGE_EVENTS_MAX_INPUT_DEPTH)."
        below: list[Any] = []
        for container in level:
            children = container.values() if isinstance(container, dict) else container
            values += len(children)
            for child in children:  # A loop, not a generator: most variables are flat.
                if isinstance(child, dict | list):
                    below.append(child)
        if values > max_values:
            return f"variables hold more than {max_values} values (USAGE_EVENTS_MAX_INPUT_VALUES)."
        level = below
    return None
