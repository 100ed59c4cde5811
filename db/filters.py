"""The meter filter language of SPEC §5 (M2–M5): a typed tree, its validation, an
in-process matcher and a compiler to SQL for SQLite and PostgreSQL, with one semantics.

Numbers compare by the decimal value of their JSON text, which for a float is its
shortest round-trip repr (what orjson writes and PostgreSQL's jsonb keeps). That is
ordinary numeric comparison except for floats beyond 2^53 compared with integers, where
the binary value of a float cannot be known in PostgreSQL: jsonb stores
4.611686018427388e18 as the number 4611686018427388000, exactly. Comparing decimals makes
the three evaluators agree and keeps a stored event's answer unchanged by that round trip.
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from db.errors import BadUserInput, UserErrorCode, Violation, shown

Path = tuple[str, ...]
ScalarValue = str | int | float | bool

MAX_FILTER_DEPTH = 3  # the top filter is level 1
MAX_FILTER_CLAUSES = 50  # in total, all levels
MAX_FILTER_KEY_LENGTH = 100
# As long as a metadata string may be (I6): a longer value equals, or is contained in, no
# stored string, and a meter or backfill keeps its filter.
MAX_FILTER_STRING_LENGTH = 500

# SQLite binds 64-bit integers only; stored integers are 64-bit by ingestion rule I6.
_MIN_INTEGER = -(2**63)
_MAX_INTEGER = 2**63 - 1


class Conjunction(Enum):
    AND = "AND"
    OR = "OR"


class FilterOperator(Enum):
    EQUALS = "EQUALS"
    NOT_EQUALS = "NOT_EQUALS"
    GREATER_THAN = "GREATER_THAN"
    GREATER_THAN_OR_EQUALS = "GREATER_THAN_OR_EQUALS"
    LESS_THAN = "LESS_THAN"
    LESS_THAN_OR_EQUALS = "LESS_THAN_OR_EQUALS"
    CONTAINS = "CONTAINS"
    DOES_NOT_CONTAIN = "DOES_NOT_CONTAIN"


_ORDERING_OPERATORS = frozenset(
    {
        FilterOperator.GREATER_THAN,
        FilterOperator.GREATER_THAN_OR_EQUALS,
        FilterOperator.LESS_THAN,
        FilterOperator.LESS_THAN_OR_EQUALS,
    }
)
_SUBSTRING_OPERATORS = frozenset({FilterOperator.CONTAINS, FilterOperator.DOES_NOT_CONTAIN})

# The JSON types of value ("boolean", "number", "string") each operator takes (M3).
_ACCEPTED_KINDS: dict[FilterOperator, frozenset[str]] = (
    {operator: frozenset({"boolean", "number", "string"}) for operator in FilterOperator}
    | {operator: frozenset({"number"}) for operator in _ORDERING_OPERATORS}
    | {operator: frozenset({"string"}) for operator in _SUBSTRING_OPERATORS}
)

# Keys that any JSON writer stores verbatim and a quoted SQLite path ($."key") addresses
# exactly. Other keys (a quote makes the path invalid; a backslash or a control character
# is escaped in the JSON text, which SQLite's path lookup compares without unescaping) are
# found with json_each instead: always exact, about 1.7 times slower.
_PLAIN_SQLITE_KEY = re.compile(r"[\x20-\x7e]+")
_ESCAPED_BY_SOME_WRITERS = frozenset("\"\\/<>&'")


def _kind(value: object) -> str | None:
    """The JSON type of a scalar the language compares, or None for anything else."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "number" if math.isfinite(value) else None
    if isinstance(value, str):
        return "string"
    return None


def _decimal(number: int | float) -> Decimal:
    return Decimal(number) if isinstance(number, int) else Decimal(repr(number))


def _compare(operator: FilterOperator, stored: Any, wanted: Any) -> bool:
    match operator:
        case FilterOperator.EQUALS:
            return bool(stored == wanted)
        case FilterOperator.NOT_EQUALS:
            return bool(stored != wanted)
        case FilterOperator.GREATER_THAN:
            return bool(stored > wanted)
        case FilterOperator.GREATER_THAN_OR_EQUALS:
            return bool(stored >= wanted)
        case FilterOperator.LESS_THAN:
            return bool(stored < wanted)
        case FilterOperator.LESS_THAN_OR_EQUALS:
            return bool(stored <= wanted)
        case FilterOperator.CONTAINS:
            return bool(wanted in stored)
        case FilterOperator.DOES_NOT_CONTAIN:
            return bool(wanted not in stored)


def _compare_sql(
    operator: FilterOperator, left: sa.ColumnElement[Any], right: sa.ColumnElement[Any]
) -> sa.ColumnElement[bool]:
    match operator:
        case FilterOperator.EQUALS:
            return left == right
        case FilterOperator.NOT_EQUALS:
            return left != right
        case FilterOperator.GREATER_THAN:
            return left > right
        case FilterOperator.GREATER_THAN_OR_EQUALS:
            return left >= right
        case FilterOperator.LESS_THAN:
            return left < right
        case FilterOperator.LESS_THAN_OR_EQUALS:
            return left <= right
    raise ValueError(f"{operator.name} is not a comparison")


@dataclass(frozen=True, slots=True)
class Clause:
    key: str
    operator: FilterOperator
    value: ScalarValue

    def __post_init__(self) -> None:
        kind = _kind(self.value)
        if kind is None or kind not in _ACCEPTED_KINDS[self.operator]:
            raise ValueError(f"{self.operator.name} cannot compare with {self.value!r}")

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """M4: false when the key is missing or holds another JSON type, whatever the operator."""
        if self.key not in metadata:
            return False
        stored = metadata[self.key]
        kind = _kind(stored)
        if kind != _kind(self.value):
            return False
        if kind == "number":
            assert isinstance(stored, int | float)
            assert isinstance(self.value, int | float)
            return _compare(self.operator, _decimal(stored), _decimal(self.value))
        return _compare(self.operator, stored, self.value)

    def to_sql(self, column: sa.ColumnElement[Any], dialect_name: str) -> sa.ColumnElement[bool]:
        """A condition that is never NULL and never raises, whatever the stored value."""
        if dialect_name == "postgresql":
            return _postgres_clause(self, column)
        if dialect_name == "sqlite":
            return _sqlite_clause(self, column)
        raise ValueError(f"no filter compiler for the {dialect_name!r} dialect")


@dataclass(frozen=True, slots=True)
class Filter:
    conjunction: Conjunction = Conjunction.AND
    clauses: tuple[Clause, ...] = ()
    groups: tuple["Filter", ...] = ()

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        if not self.clauses and not self.groups:
            return True
        results = [clause.matches(metadata) for clause in self.clauses]
        results += [group.matches(metadata) for group in self.groups]
        return all(results) if self.conjunction is Conjunction.AND else any(results)

    def to_sql(self, column: sa.ColumnElement[Any], dialect_name: str) -> sa.ColumnElement[bool]:
        members = [clause.to_sql(column, dialect_name) for clause in self.clauses]
        members += [group.to_sql(column, dialect_name) for group in self.groups]
        if not members:
            # No condition at all, for OR as for AND (M2).
            return sa.true()
        if len(members) == 1:
            return members[0]
        return sa.and_(*members) if self.conjunction is Conjunction.AND else sa.or_(*members)

    def to_document(self) -> dict[str, Any]:
        return {
            "conjunction": self.conjunction.value,
            "clauses": [
                {"key": clause.key, "operator": clause.operator.value, "value": clause.value}
                for clause in self.clauses
            ],
            "groups": [group.to_document() for group in self.groups],
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "Filter":
        return cls(
            conjunction=Conjunction(document.get("conjunction", "AND")),
            clauses=tuple(
                Clause(clause["key"], FilterOperator(clause["operator"]), clause["value"])
                for clause in document.get("clauses", ())
            ),
            groups=tuple(cls.from_document(group) for group in document.get("groups", ())),
        )


# PostgreSQL: `->` takes the key as a plain text operand, never as a path. Both sides of
# a comparison are jsonb, so no cast can fail on a stored value of another type; jsonb
# compares numbers as numeric, exactly, and strings byte for byte.


def _postgres_clause(clause: Clause, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    document = sa.type_coerce(column, JSONB)
    key = sa.literal(clause.key, sa.Text)
    member = document.op("->", return_type=JSONB)(key)
    kind = _kind(clause.value)
    assert kind is not None
    # The kinds are named as jsonb_typeof names them.
    typed = sa.func.jsonb_typeof(member).is_not_distinct_from(kind)
    if clause.operator in _SUBSTRING_OPERATORS:
        position = sa.func.strpos(
            document.op("->>", return_type=sa.Text)(key), sa.literal(clause.value, sa.Text)
        )
        found = position > 0 if clause.operator is FilterOperator.CONTAINS else position == 0
        return sa.and_(typed, found)
    wanted = sa.cast(sa.literal(_json_text(clause.value), sa.Text), JSONB)
    return sa.and_(typed, _compare_sql(clause.operator, member, wanted))


def _json_text(value: ScalarValue) -> str:
    # json.dumps writes a float as its repr: the decimal the matcher compares.
    return json.dumps(value, ensure_ascii=False)


# SQLite: json_type tells the JSON type ('true'/'false', 'integer'/'real', 'text'); the
# value comes out as an SQL value (booleans as 1/0, hence the type test). instr() is a
# case-sensitive substring test; LIKE would not be.


def sqlite_key_path(key: str) -> str | None:
    """The SQLite JSON path (`$."key"`) that finds `key` exactly, or None if none does."""
    if _PLAIN_SQLITE_KEY.fullmatch(key) and not _ESCAPED_BY_SOME_WRITERS.intersection(key):
        return f'$."{key}"'
    return None


def _sqlite_clause(clause: Clause, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    plain_path = sqlite_key_path(clause.key)
    if plain_path is not None:
        path = sa.literal(plain_path, sa.Text)
        return _sqlite_member_condition(
            clause, sa.func.json_type(column, path), sa.func.json_extract(column, path)
        )
    members = sa.func.json_each(column).table_valued("key", "type", "value").alias()
    return (
        sa.exists()
        .where(
            members.c.key == sa.literal(clause.key, sa.Text),
            _sqlite_member_condition(clause, members.c.type, members.c.value),
        )
        .correlate_except(members)
    )


def _sqlite_member_condition(
    clause: Clause, json_type: sa.ColumnElement[Any], json_value: sa.ColumnElement[Any]
) -> sa.ColumnElement[bool]:
    value = clause.value
    operator = clause.operator
    if isinstance(value, bool):
        wanted = "true" if value == (operator is FilterOperator.EQUALS) else "false"
        return json_type.is_not_distinct_from(wanted)
    if isinstance(value, str):
        typed = json_type.is_not_distinct_from("text")
        if operator in _SUBSTRING_OPERATORS:
            position = sa.func.instr(json_value, sa.literal(value, sa.Text))
            found = position > 0 if operator is FilterOperator.CONTAINS else position == 0
            return sa.and_(typed, found)
        return sa.and_(typed, _compare_sql(operator, json_value, sa.literal(value, sa.Text)))
    # SQLite holds a JSON number as a 64-bit integer or a double and compares those two
    # exactly, by binary value; the matcher and PostgreSQL compare decimals. The bounds
    # below turn the decimal comparison into an equivalent one on each SQLite type.
    target = _decimal(value)
    alternatives: list[sa.ColumnElement[bool]] = []
    for json_type_name, bound in (
        ("integer", _integer_bound(operator, target)),
        ("real", _real_bound(operator, target)),
    ):
        typed = json_type.is_not_distinct_from(json_type_name)
        if isinstance(bound, bool):
            if bound:
                alternatives.append(typed)
        else:
            bound_operator, number = bound
            alternatives.append(sa.and_(typed, _compare_sql(bound_operator, json_value, number)))
    return sa.or_(*alternatives) if alternatives else sa.false()


Bound = bool | tuple[FilterOperator, sa.ColumnElement[Any]]


def _integer_bound(operator: FilterOperator, target: Decimal) -> Bound:
    """An exact test of `integer <operator> target` against a 64-bit integer, or a constant."""
    floor, ceiling = math.floor(target), math.ceil(target)
    if operator in (FilterOperator.EQUALS, FilterOperator.NOT_EQUALS):
        if floor != ceiling or not _MIN_INTEGER <= floor <= _MAX_INTEGER:
            return operator is FilterOperator.NOT_EQUALS
        return operator, sa.literal(floor, sa.BigInteger)
    # Between integers, s > t ⟺ s > ⌊t⌋, s ≤ t ⟺ s ≤ ⌊t⌋, s ≥ t ⟺ s ≥ ⌈t⌉, s < t ⟺ s < ⌈t⌉.
    rounded_down = operator in (FilterOperator.GREATER_THAN, FilterOperator.LESS_THAN_OR_EQUALS)
    bound = floor if rounded_down else ceiling
    if bound > _MAX_INTEGER:
        return operator in (FilterOperator.LESS_THAN, FilterOperator.LESS_THAN_OR_EQUALS)
    if bound < _MIN_INTEGER:
        return operator in (FilterOperator.GREATER_THAN, FilterOperator.GREATER_THAN_OR_EQUALS)
    return operator, sa.literal(bound, sa.BigInteger)


def _real_bound(operator: FilterOperator, target: Decimal) -> Bound:
    """An exact test of `decimal(real) <operator> target` as a comparison of doubles.

    decimal(f) = Decimal(repr(f)) grows strictly with f, so the doubles above a target
    start at the double nearest to it: at that double itself when it shows more than the
    target, just after it when it shows less.
    """
    nearest = float(target)
    shown = Decimal(repr(nearest))
    if shown == target:
        return operator, sa.literal(nearest, sa.Float)
    if operator in (FilterOperator.EQUALS, FilterOperator.NOT_EQUALS):
        return operator is FilterOperator.NOT_EQUALS
    above = shown > target
    if operator in (FilterOperator.GREATER_THAN, FilterOperator.GREATER_THAN_OR_EQUALS):
        strictest = FilterOperator.GREATER_THAN_OR_EQUALS if above else FilterOperator.GREATER_THAN
    else:
        strictest = FilterOperator.LESS_THAN if above else FilterOperator.LESS_THAN_OR_EQUALS
    return strictest, sa.literal(nearest, sa.Float)


# Validation (M2, M3): plain nested data in, a Filter or every violation out.


def parse_filter(raw: Mapping[str, Any], path: Path) -> tuple[Filter | None, list[Violation]]:
    parser = _FilterParser()
    tree = parser.filter(raw, path, level=1)
    if parser.clause_count > MAX_FILTER_CLAUSES:
        parser.reject(
            path,
            f"A filter may hold at most {MAX_FILTER_CLAUSES} clauses in all, "
            f"not {parser.clause_count}.",
        )
    if parser.violations or tree is None:
        return None, parser.violations
    return tree, []


_FILTER_FIELDS = frozenset({"conjunction", "clauses", "groups"})
_CLAUSE_FIELDS = frozenset({"key", "operator", "value"})


class _FilterParser:
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.clause_count = 0

    def reject(self, path: Path, message: str) -> None:
        self.violations.append(Violation(UserErrorCode.FILTER_INVALID, message, path))

    def filter(self, raw: object, path: Path, level: int) -> Filter | None:
        if not isinstance(raw, Mapping):
            self.reject(path, f"A filter must be an object, not {_json_type_name(raw)}.")
            return None
        self._reject_unknown_fields(raw, _FILTER_FIELDS, path)
        conjunction = self._conjunction(raw.get("conjunction"), (*path, "conjunction"))
        raw_clauses = self._list(raw.get("clauses"), (*path, "clauses"))
        raw_groups = self._list(raw.get("groups"), (*path, "groups"))
        self.clause_count += len(raw_clauses)
        clauses = [
            self.clause(raw_clause, (*path, "clauses", str(index)))
            for index, raw_clause in enumerate(raw_clauses)
        ]
        if raw_groups and level >= MAX_FILTER_DEPTH:
            self.reject(
                (*path, "groups", "0"),
                f"Filters nest at most {MAX_FILTER_DEPTH} levels deep (the top filter is "
                f"level 1); this group would be level {level + 1}.",
            )
            return None
        groups = [
            self.filter(raw_group, (*path, "groups", str(index)), level + 1)
            for index, raw_group in enumerate(raw_groups)
        ]
        if conjunction is None or None in clauses or None in groups:
            return None
        return Filter(
            conjunction,
            tuple(clause for clause in clauses if clause is not None),
            tuple(group for group in groups if group is not None),
        )

    def clause(self, raw: object, path: Path) -> Clause | None:
        if not isinstance(raw, Mapping):
            self.reject(path, f"A clause must be an object, not {_json_type_name(raw)}.")
            return None
        self._reject_unknown_fields(raw, _CLAUSE_FIELDS, path)
        key = self._key(raw.get("key"), (*path, "key"))
        operator = self._operator(raw.get("operator"), (*path, "operator"))
        value_path = (*path, "value")
        if "value" not in raw:
            self.reject(value_path, "A clause needs a value.")
            return None
        value = raw["value"]
        problem = _value_problem(value)
        if problem is not None:
            self.reject(value_path, problem)
            return None
        if operator is None or key is None:
            return None
        kind = _kind(value)
        if kind not in _ACCEPTED_KINDS[operator]:
            accepted = "a number" if operator in _ORDERING_OPERATORS else "a string"
            self.reject(
                value_path, f"{operator.name} takes {accepted} value, not {_json_type_name(value)}."
            )
            return None
        return Clause(key, operator, value)

    def _reject_unknown_fields(
        self, raw: Mapping[Any, Any], known: frozenset[str], path: Path
    ) -> None:
        for name in raw:
            if name not in known:
                name_shown = shown(str(name))
                expected = ", ".join(sorted(known))
                self.reject(
                    (*path, name_shown), f"Unknown field {name_shown!r}; expected {expected}."
                )

    def _conjunction(self, raw: object, path: Path) -> Conjunction | None:
        if raw is None:
            return Conjunction.AND
        if isinstance(raw, Conjunction):
            return raw
        if isinstance(raw, str) and raw in Conjunction.__members__:
            return Conjunction[raw]
        self.reject(path, "conjunction must be AND or OR.")
        return None

    def _operator(self, raw: object, path: Path) -> FilterOperator | None:
        if isinstance(raw, FilterOperator):
            return raw
        if isinstance(raw, str) and raw in FilterOperator.__members__:
            return FilterOperator[raw]
        names = ", ".join(FilterOperator.__members__)
        self.reject(path, f"operator must be one of {names}.")
        return None

    def _key(self, raw: object, path: Path) -> str | None:
        if not isinstance(raw, str):
            self.reject(path, f"key must be a string, not {_json_type_name(raw)}.")
            return None
        if not 1 <= len(raw) <= MAX_FILTER_KEY_LENGTH:
            self.reject(
                path, f"key must be 1 to {MAX_FILTER_KEY_LENGTH} characters long, not {len(raw)}."
            )
            return None
        if not _is_storable_text(raw):
            self.reject(path, _UNSTORABLE_TEXT.format(what="key"))
            return None
        return raw

    def _list(self, raw: object, path: Path) -> Sequence[Any]:
        if raw is None:
            return ()
        if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
            return raw
        self.reject(path, f"Expected a list, not {_json_type_name(raw)}.")
        return ()


_UNSTORABLE_TEXT = (
    "The {what} must not contain the NUL character (U+0000) or unpaired surrogates, "
    "which no database stores."
)


def _is_storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _value_problem(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if _MIN_INTEGER <= value <= _MAX_INTEGER:
            return None
        return "An integer value must fit in 64 bits (between -2^63 and 2^63-1)."
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return "A number value must be finite; NaN and Infinity are not allowed."
    if isinstance(value, str):
        if len(value) > MAX_FILTER_STRING_LENGTH:
            return (
                f"value must be at most {MAX_FILTER_STRING_LENGTH} characters long, "
                f"not {len(value)}."
            )
        return None if _is_storable_text(value) else _UNSTORABLE_TEXT.format(what="value")
    return f"value must be a string, a number or a boolean, not {_json_type_name(value)}."


def _json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Sequence):
        return "an array"
    return type(value).__name__


def parse_filter_argument(raw: object, path: Path) -> Filter:
    """A filter given as a query argument: the tree, or BAD_USER_INPUT naming the first
    problem (and how many more there are) at its path."""
    parsed, violations = parse_filter(raw, path)  # type: ignore[arg-type]
    if violations or parsed is None:
        first = violations[0]
        more = f" ({len(violations) - 1} more problems)" if len(violations) > 1 else ""
        raise BadUserInput(UserErrorCode.FILTER_INVALID, first.message + more, first.field)
    return parsed
