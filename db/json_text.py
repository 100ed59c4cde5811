"""JSON text for the database that keeps every number what it was (I6: stored exactly).

PostgreSQL's `jsonb` keeps numbers as `numeric`, which prints `1e16` as
`10000000000000000`: read back, that float has become an int. A float written in
positional notation with a `.0` keeps its scale, so it comes back a float. Floats of
16 or more integral digits are the only ones orjson writes with a positive exponent, so
only those are rewritten. `numeric` has no negative zero either; -0.0 is written as 0.0
on both databases so that they return the same value (0.0 == -0.0 in JSON's data model).
"""

import math
import re
from decimal import Decimal
from typing import Any

import orjson

# What orjson writes for a float with a positive exponent (`1e16`, `1.5e+16`) or for -0.0.
# A string holding the same characters only sends the document down the exact path.
_MAY_HOLD_INEXACT_NUMBER = re.compile(rb"[0-9]e\+?[0-9]|-0\.0(?![0-9])")


def dump_json(value: Any, *, sort_keys: bool = False) -> str:
    """`value` as JSON text whose numbers read back with the same type and value.

    With `sort_keys`, the text is canonical: two documents that the database would store
    alike (`-0.0` and `0.0` included) get the same text.
    """
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    text = orjson.dumps(value, option=option)
    if _MAY_HOLD_INEXACT_NUMBER.search(text):
        text = orjson.dumps(_with_exact_numbers(value), option=option)
    return text.decode()


def _with_exact_numbers(value: Any) -> Any:
    if type(value) is float:
        if value == 0.0:
            return 0.0
        if math.isfinite(value) and abs(value) >= 1e16:
            # The shortest digits that read back as this float (what repr and orjson
            # write), in positional notation: the same number a filter compares with.
            return orjson.Fragment(f"{Decimal(repr(value)):f}.0".encode())
        return value
    if isinstance(value, dict):
        return {key: _with_exact_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_with_exact_numbers(item) for item in value]
    return value
