"""The filter language of SPEC §5 (M2–M4) without a database: matcher, validation, documents.

The SQL compilers are checked against this matcher in test_filters_sql.py (M5).
"""

import math
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from db.errors import UserErrorCode, Violation
from db.filters import (
    MAX_FILTER_CLAUSES,
    MAX_FILTER_DEPTH,
    MAX_FILTER_KEY_LENGTH,
    Clause,
    Conjunction,
    Filter,
    FilterOperator,
    ScalarValue,
    parse_filter,
)
from db.tables import events

PATH = ("filter",)  # as createMeter passes it
ALL_OPERATORS = list(FilterOperator)
EQUALITY = [FilterOperator.EQUALS, FilterOperator.NOT_EQUALS]
ORDERING = [
    FilterOperator.GREATER_THAN,
    FilterOperator.GREATER_THAN_OR_EQUALS,
    FilterOperator.LESS_THAN,
    FilterOperator.LESS_THAN_OR_EQUALS,
]
SUBSTRING = [FilterOperator.CONTAINS, FilterOperator.DOES_NOT_CONTAIN]


def matches(
    key: str, operator: FilterOperator, value: ScalarValue, metadata: dict[str, Any]
) -> bool:
    return Filter(clauses=(Clause(key, operator, value),)).matches(metadata)


def a_value_for(operator: FilterOperator) -> ScalarValue:
    return "x" if operator in SUBSTRING else 1


def summary(violations: list[Violation]) -> list[tuple[UserErrorCode, tuple[str, ...]]]:
    return [(violation.code, violation.field) for violation in violations]


def invalid_at(*fields: tuple[str, ...]) -> list[tuple[UserErrorCode, tuple[str, ...]]]:
    return [(UserErrorCode.FILTER_INVALID, field) for field in fields]


def raw_clause(key: Any = "plan", operator: Any = "EQUALS", value: Any = "pro") -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value}


def nested(levels: int) -> dict[str, Any]:
    """A chain of `levels` filters, each the only group of the one above, with one clause."""
    raw: dict[str, Any] = {"clauses": [raw_clause()]}
    for _ in range(levels - 1):
        raw = {"conjunction": "OR", "clauses": [raw_clause()], "groups": [raw]}
    return raw


# M4: typed comparison in the matcher


def test_m4_string_one_never_equals_number_one() -> None:
    assert not matches("n", FilterOperator.EQUALS, "1", {"n": 1})
    assert not matches("n", FilterOperator.EQUALS, 1, {"n": "1"})
    assert not matches("n", FilterOperator.NOT_EQUALS, "1", {"n": 1})


def test_m4_true_never_equals_one() -> None:
    assert not matches("n", FilterOperator.EQUALS, True, {"n": 1})
    assert not matches("n", FilterOperator.EQUALS, 1, {"n": True})
    assert not matches("n", FilterOperator.EQUALS, 0, {"n": False})
    assert not matches("n", FilterOperator.NOT_EQUALS, True, {"n": 1})
    assert not matches("n", FilterOperator.GREATER_THAN, 0, {"n": True})


def test_m4_two_equals_two_point_zero() -> None:
    assert matches("n", FilterOperator.EQUALS, 2, {"n": 2.0})
    assert matches("n", FilterOperator.EQUALS, 2.0, {"n": 2})
    assert not matches("n", FilterOperator.NOT_EQUALS, 2, {"n": 2.0})
    assert matches("n", FilterOperator.GREATER_THAN_OR_EQUALS, 2.0, {"n": 2})


def test_m4_negative_zero_equals_zero() -> None:
    assert matches("n", FilterOperator.EQUALS, 0, {"n": -0.0})
    assert matches("n", FilterOperator.EQUALS, -0.0, {"n": 0})
    assert not matches("n", FilterOperator.LESS_THAN, 0, {"n": -0.0})


@pytest.mark.parametrize(
    ("operator", "value", "stored", "expected"),
    [
        (FilterOperator.GREATER_THAN, 9, 10, True),
        (FilterOperator.GREATER_THAN, 10, 10, False),
        (FilterOperator.GREATER_THAN, 9.5, 10, True),
        (FilterOperator.GREATER_THAN_OR_EQUALS, 10, 10.0, True),
        (FilterOperator.LESS_THAN, 10, 9.999, True),
        (FilterOperator.LESS_THAN, -1, -2, True),
        (FilterOperator.LESS_THAN_OR_EQUALS, 0.1, 0.1, True),
        (FilterOperator.LESS_THAN_OR_EQUALS, 0, 0.1, False),
        (FilterOperator.NOT_EQUALS, 3, 4, True),
        (FilterOperator.EQUALS, 2**53 + 1, 2**53, False),
    ],
)
def test_m4_numbers_compare_numerically(
    operator: FilterOperator, value: float, stored: float, expected: bool
) -> None:
    assert matches("n", operator, value, {"n": stored}) is expected


def test_m4_numbers_beyond_2_53_compare_by_the_decimal_of_their_json_text() -> None:
    # 2^62 + 512 is written (and kept by PostgreSQL) as 4.611686018427388e18, which is
    # exactly 4611686018427388000: that decimal is the number the clause compares.
    stored = {"n": float(2**62 + 512)}
    assert matches("n", FilterOperator.EQUALS, 4611686018427388000, stored)
    assert not matches("n", FilterOperator.EQUALS, 2**62 + 512, stored)
    assert matches("n", FilterOperator.LESS_THAN, 4611686018427388100, stored)


def test_m4_strings_compare_case_sensitively() -> None:
    assert matches("plan", FilterOperator.EQUALS, "Pro", {"plan": "Pro"})
    assert not matches("plan", FilterOperator.EQUALS, "pro", {"plan": "Pro"})
    assert matches("plan", FilterOperator.NOT_EQUALS, "pro", {"plan": "Pro"})
    assert not matches("plan", FilterOperator.EQUALS, "Pro ", {"plan": "Pro"})


def test_m4_booleans_compare_as_booleans() -> None:
    assert matches("paid", FilterOperator.EQUALS, True, {"paid": True})
    assert matches("paid", FilterOperator.NOT_EQUALS, True, {"paid": False})
    assert not matches("paid", FilterOperator.EQUALS, False, {"paid": "false"})


@pytest.mark.parametrize("operator", ALL_OPERATORS)
def test_m4_missing_key_is_false_for_every_operator(operator: FilterOperator) -> None:
    assert not matches("plan", operator, a_value_for(operator), {"other": 1})
    assert not matches("plan", operator, a_value_for(operator), {})


@pytest.mark.parametrize("stored", [None, {}, {"plan": 1}, [], [1], math.nan, math.inf])
@pytest.mark.parametrize("operator", ALL_OPERATORS)
def test_m4_stored_null_object_array_or_non_finite_is_false_for_every_operator(
    operator: FilterOperator, stored: Any
) -> None:
    assert not matches("plan", operator, a_value_for(operator), {"plan": stored})


@pytest.mark.parametrize(
    ("operator", "value", "stored"),
    [
        (FilterOperator.NOT_EQUALS, "free", 1),
        (FilterOperator.NOT_EQUALS, 1, "free"),
        (FilterOperator.NOT_EQUALS, True, "true"),
        (FilterOperator.DOES_NOT_CONTAIN, "x", 5),
        (FilterOperator.DOES_NOT_CONTAIN, "x", False),
        (FilterOperator.GREATER_THAN, 0, "5"),
    ],
)
def test_m4_value_of_another_type_is_false_even_for_negative_operators(
    operator: FilterOperator, value: ScalarValue, stored: Any
) -> None:
    assert not matches("plan", operator, value, {"plan": stored})


def test_m3_contains_is_a_case_sensitive_substring() -> None:
    assert matches("path", FilterOperator.CONTAINS, "/v1/", {"path": "/api/v1/users"})
    assert not matches("path", FilterOperator.CONTAINS, "/V1/", {"path": "/api/v1/users"})
    assert matches("path", FilterOperator.DOES_NOT_CONTAIN, "/V1/", {"path": "/api/v1/users"})
    assert not matches("path", FilterOperator.DOES_NOT_CONTAIN, "api", {"path": "/api/v1/users"})
    # No wildcards: % and _ are ordinary characters.
    assert not matches("path", FilterOperator.CONTAINS, "a%i", {"path": "/api/v1/users"})


def test_m3_empty_substring_is_contained_in_every_string() -> None:
    assert matches("path", FilterOperator.CONTAINS, "", {"path": ""})
    assert matches("path", FilterOperator.CONTAINS, "", {"path": "x"})
    assert not matches("path", FilterOperator.DOES_NOT_CONTAIN, "", {"path": "x"})
    assert not matches("path", FilterOperator.CONTAINS, "", {"path": 1})


def test_m3_keys_are_exact() -> None:
    assert matches("a.b", FilterOperator.EQUALS, 1, {"a.b": 1})
    assert not matches("a.b", FilterOperator.EQUALS, 1, {"a": {"b": 1}})
    assert not matches("Plan", FilterOperator.EQUALS, "pro", {"plan": "pro"})


# M2: conjunctions and groups


PRO = Clause("plan", FilterOperator.EQUALS, "pro")
BIG = Clause("tokens", FilterOperator.GREATER_THAN, 1000)


@pytest.mark.parametrize("conjunction", list(Conjunction))
@pytest.mark.parametrize("metadata", [{}, {"plan": "pro"}, {"plan": None}])
def test_m2_empty_filter_matches_every_event(
    conjunction: Conjunction, metadata: dict[str, Any]
) -> None:
    assert Filter(conjunction).matches(metadata)


@pytest.mark.parametrize(
    ("metadata", "with_and", "with_or"),
    [
        ({"plan": "pro", "tokens": 5000}, True, True),
        ({"plan": "pro", "tokens": 10}, False, True),
        ({"plan": "free", "tokens": 5000}, False, True),
        ({"plan": "free"}, False, False),
    ],
)
def test_m2_clauses_combine_by_the_conjunction(
    metadata: dict[str, Any], with_and: bool, with_or: bool
) -> None:
    assert Filter(Conjunction.AND, (PRO, BIG)).matches(metadata) is with_and
    assert Filter(Conjunction.OR, (PRO, BIG)).matches(metadata) is with_or


def test_m2_groups_combine_with_clauses() -> None:
    # plan = pro AND (tokens > 1000 OR region = eu)
    tree = Filter(
        Conjunction.AND,
        (PRO,),
        (Filter(Conjunction.OR, (BIG, Clause("region", FilterOperator.EQUALS, "eu"))),),
    )
    assert tree.matches({"plan": "pro", "region": "eu"})
    assert tree.matches({"plan": "pro", "tokens": 2000})
    assert not tree.matches({"plan": "pro", "tokens": 2, "region": "us"})
    assert not tree.matches({"plan": "free", "region": "eu"})


def test_m2_an_empty_group_is_no_condition() -> None:
    assert Filter(Conjunction.OR, (PRO,), (Filter(),)).matches({"plan": "free"})
    assert Filter(Conjunction.AND, (PRO,), (Filter(Conjunction.OR),)).matches({"plan": "pro"})
    assert not Filter(Conjunction.AND, (PRO,), (Filter(),)).matches({"plan": "free"})


# M2/M3: validation


def test_m2_a_complete_filter_parses() -> None:
    raw = {
        "conjunction": "OR",
        "clauses": [raw_clause(), raw_clause("tokens", "GREATER_THAN", 1000)],
        "groups": [{"conjunction": "AND", "clauses": [raw_clause("paid", "EQUALS", True)]}],
    }
    tree, violations = parse_filter(raw, PATH)
    assert violations == []
    assert tree == Filter(
        Conjunction.OR,
        (PRO, BIG),
        (Filter(Conjunction.AND, (Clause("paid", FilterOperator.EQUALS, True),)),),
    )


def test_m2_absent_parts_default_to_and_with_nothing() -> None:
    assert parse_filter({}, PATH) == (Filter(), [])
    assert parse_filter({"conjunction": None, "clauses": None, "groups": None}, PATH) == (
        Filter(),
        [],
    )


def test_m2_enum_members_are_accepted_as_well_as_names() -> None:
    raw = {
        "conjunction": Conjunction.OR,
        "clauses": [raw_clause(operator=FilterOperator.NOT_EQUALS)],
    }
    tree, violations = parse_filter(raw, PATH)
    assert violations == []
    assert tree == Filter(Conjunction.OR, (Clause("plan", FilterOperator.NOT_EQUALS, "pro"),))


def test_m2_depth_three_is_accepted() -> None:
    tree, violations = parse_filter(nested(MAX_FILTER_DEPTH), PATH)
    assert violations == []
    assert tree is not None
    assert tree.groups[0].groups[0].clauses == (PRO,)


def test_m2_depth_four_is_refused_at_the_first_group_too_deep() -> None:
    tree, violations = parse_filter(nested(MAX_FILTER_DEPTH + 1), PATH)
    assert tree is None
    assert summary(violations) == invalid_at((*PATH, "groups", "0", "groups", "0", "groups", "0"))


def test_m2_groups_deeper_than_allowed_are_not_descended_into() -> None:
    # Level 5 holds a broken clause; only the depth is reported.
    raw = nested(MAX_FILTER_DEPTH + 2)
    raw["groups"][0]["groups"][0]["groups"][0]["groups"][0]["clauses"] = [raw_clause(key="")]
    _, violations = parse_filter(raw, PATH)
    assert summary(violations) == invalid_at((*PATH, "groups", "0", "groups", "0", "groups", "0"))


def spread_clauses(total: int) -> dict[str, Any]:
    """`total` clauses over three levels, the way a real filter spreads them."""
    third = total // 3
    return {
        "clauses": [raw_clause()] * third,
        "groups": [
            {
                "clauses": [raw_clause()] * third,
                "groups": [{"clauses": [raw_clause()] * (total - 2 * third)}],
            }
        ],
    }


def test_m2_fifty_clauses_in_all_are_accepted() -> None:
    tree, violations = parse_filter(spread_clauses(MAX_FILTER_CLAUSES), PATH)
    assert violations == []
    assert tree is not None
    assert parse_filter({"clauses": [raw_clause()] * MAX_FILTER_CLAUSES}, PATH)[1] == []


def test_m2_fifty_one_clauses_in_all_are_refused_at_the_filter() -> None:
    for raw in (
        spread_clauses(MAX_FILTER_CLAUSES + 1),
        {"clauses": [raw_clause()] * (MAX_FILTER_CLAUSES + 1)},
    ):
        tree, violations = parse_filter(raw, PATH)
        assert tree is None
        assert summary(violations) == invalid_at(PATH)
        assert "51" in violations[0].message


@pytest.mark.parametrize(
    "key", ["p", "x" * MAX_FILTER_KEY_LENGTH, "a.b", 'say "hi"', "$[0]", " ", "日本", "back\\slash"]
)
def test_m3_any_key_of_1_to_100_characters_is_accepted(key: str) -> None:
    tree, violations = parse_filter({"clauses": [raw_clause(key=key)]}, PATH)
    assert violations == []
    assert tree == Filter(clauses=(Clause(key, FilterOperator.EQUALS, "pro"),))


@pytest.mark.parametrize(
    "key", ["", "x" * (MAX_FILTER_KEY_LENGTH + 1), None, 1, ["plan"], "a\x00b", "\ud800"]
)
def test_m3_bad_keys_are_refused(key: Any) -> None:
    tree, violations = parse_filter({"clauses": [raw_clause(), raw_clause(key=key)]}, PATH)
    assert tree is None
    assert summary(violations) == invalid_at((*PATH, "clauses", "1", "key"))


@pytest.mark.parametrize("operator", ["equals", "LIKE", "", None, 1])
def test_m3_unknown_operators_are_refused(operator: Any) -> None:
    _, violations = parse_filter({"clauses": [raw_clause(operator=operator)]}, PATH)
    assert summary(violations) == invalid_at((*PATH, "clauses", "0", "operator"))


@pytest.mark.parametrize("conjunction", ["and", "XOR", "", 1, True])
def test_m2_unknown_conjunctions_are_refused(conjunction: Any) -> None:
    _, violations = parse_filter({"conjunction": conjunction}, PATH)
    assert summary(violations) == invalid_at((*PATH, "conjunction"))


@pytest.mark.parametrize(
    "value",
    [None, {}, {"a": 1}, [], [1], math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, "a\x00"],
)
@pytest.mark.parametrize("operator", EQUALITY)
def test_m3_null_object_array_and_non_finite_values_are_refused(
    operator: FilterOperator, value: Any
) -> None:
    raw = {"clauses": [raw_clause(operator=operator.name, value=value)]}
    tree, violations = parse_filter(raw, PATH)
    assert tree is None
    assert summary(violations) == invalid_at((*PATH, "clauses", "0", "value"))


@pytest.mark.parametrize("value", ["pro", "", 0, -(2**63), 2**63 - 1, 2.5, -0.0, True, False])
@pytest.mark.parametrize("operator", EQUALITY)
def test_m3_equality_accepts_strings_numbers_and_booleans(
    operator: FilterOperator, value: ScalarValue
) -> None:
    raw = {"clauses": [raw_clause(operator=operator.name, value=value)]}
    assert parse_filter(raw, PATH) == (Filter(clauses=(Clause("plan", operator, value),)), [])


@pytest.mark.parametrize(
    ("operators", "accepted", "refused"),
    [
        (ORDERING, [0, -1, 2.5, 1e300, 2**63 - 1], ["1", "", True, False]),
        (SUBSTRING, ["", "x", "日本"], [1, 0.5, True, False]),
    ],
)
def test_m3_operators_take_only_their_value_type(
    operators: list[FilterOperator], accepted: list[ScalarValue], refused: list[ScalarValue]
) -> None:
    for operator in operators:
        for value in accepted:
            raw = {"clauses": [raw_clause(operator=operator.name, value=value)]}
            assert parse_filter(raw, PATH)[1] == [], (operator, value)
        for value in refused:
            raw = {"clauses": [raw_clause(operator=operator.name, value=value)]}
            tree, violations = parse_filter(raw, PATH)
            assert tree is None
            assert summary(violations) == invalid_at((*PATH, "clauses", "0", "value"))


def test_m3_a_missing_value_is_refused() -> None:
    _, violations = parse_filter({"clauses": [{"key": "plan", "operator": "EQUALS"}]}, PATH)
    assert summary(violations) == invalid_at((*PATH, "clauses", "0", "value"))


def test_m2_every_violation_is_collected_with_its_path() -> None:
    raw = {
        "conjunction": "BOTH",
        "clauses": [raw_clause(), raw_clause(operator="LESS_THAN", value="9"), "plan=pro"],
        "groups": [
            {"clauses": [raw_clause(), raw_clause(key="")]},
            {"clauses": {"key": "plan"}, "groups": ["nested"]},
            [],
        ],
        "order": "ASC",
    }
    tree, violations = parse_filter(raw, PATH)
    assert tree is None
    assert summary(violations) == invalid_at(
        (*PATH, "order"),
        (*PATH, "conjunction"),
        (*PATH, "clauses", "1", "value"),
        (*PATH, "clauses", "2"),
        (*PATH, "groups", "0", "clauses", "1", "key"),
        (*PATH, "groups", "1", "clauses"),
        (*PATH, "groups", "1", "groups", "0"),
        (*PATH, "groups", "2"),
    )
    assert all(violation.message for violation in violations)


def test_m2_a_filter_that_is_not_an_object_is_refused() -> None:
    assert summary(parse_filter([], PATH)[1]) == invalid_at(PATH)  # type: ignore[arg-type]


def test_m3_messages_say_what_is_wrong() -> None:
    raw = {
        "clauses": [
            raw_clause(operator="GREATER_THAN", value=True),
            raw_clause(value=None),
            raw_clause(key="k" * 101),
        ]
    }
    messages = [violation.message for violation in parse_filter(raw, PATH)[1]]
    assert messages == [
        "GREATER_THAN takes a number value, not a boolean.",
        "value must be a string, a number or a boolean, not null.",
        "key must be 1 to 100 characters long, not 101.",
    ]


# Documents: what a meter stores


def test_m1_to_document_is_plain_json() -> None:
    tree = Filter(Conjunction.OR, (PRO, BIG), (Filter(clauses=(BIG,)),))
    assert tree.to_document() == {
        "conjunction": "OR",
        "clauses": [
            {"key": "plan", "operator": "EQUALS", "value": "pro"},
            {"key": "tokens", "operator": "GREATER_THAN", "value": 1000},
        ],
        "groups": [
            {
                "conjunction": "AND",
                "clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 1000}],
                "groups": [],
            }
        ],
    }


def test_m1_from_document_inverts_to_document_through_json() -> None:
    tree = Filter(
        Conjunction.OR,
        (
            PRO,
            Clause("ratio", FilterOperator.LESS_THAN, 0.25),
            Clause("x", FilterOperator.EQUALS, False),
        ),
        (Filter(Conjunction.AND, (BIG,), (Filter(),)),),
    )
    stored = orjson.loads(orjson.dumps(tree.to_document()))
    assert Filter.from_document(stored) == tree
    assert parse_filter(stored, PATH) == (tree, [])
    assert Filter.from_document({}) == Filter()


def test_m3_a_clause_refuses_a_value_its_operator_cannot_compare() -> None:
    with pytest.raises(ValueError, match="GREATER_THAN"):
        Clause("n", FilterOperator.GREATER_THAN, "1")
    with pytest.raises(ValueError, match="CONTAINS"):
        Clause("n", FilterOperator.CONTAINS, 1)
    with pytest.raises(ValueError, match="EQUALS"):
        Clause("n", FilterOperator.EQUALS, math.nan)


# SQL text: keys and values travel as bound parameters only

HOSTILE_KEY = "x'); DROP TABLE events; --\"$.a[0]"
HOSTILE_VALUE = "'; DELETE FROM events WHERE '1'='1"


@pytest.mark.parametrize(
    ("dialect_name", "dialect"),
    # SQLAlchemy's dialect classes are untyped.
    [("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())],  # type: ignore[no-untyped-call]
)
@pytest.mark.parametrize("key", [HOSTILE_KEY, "plain_key"])
def test_m5_keys_and_values_are_bound_never_spliced_into_sql(
    dialect_name: str, dialect: sa.Dialect, key: str
) -> None:
    tree = Filter(
        Conjunction.OR,
        tuple(
            Clause(key, operator, 5 if operator in ORDERING else HOSTILE_VALUE)
            for operator in FilterOperator
        ),
    )
    compiled = sa.select(events.c.event_id).where(tree.to_sql(events.c.metadata, dialect_name))
    sql = str(compiled.compile(dialect=dialect))
    assert "DROP" not in sql
    assert "DELETE" not in sql
    assert key not in sql


def test_m5_an_unknown_dialect_is_an_error() -> None:
    with pytest.raises(ValueError, match="mysql"):
        Filter(clauses=(PRO,)).to_sql(events.c.metadata, "mysql")


def test_m2_an_empty_filter_compiles_to_true() -> None:
    condition = Filter(Conjunction.OR).to_sql(events.c.metadata, "postgresql")
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    assert str(condition.compile(dialect=dialect)) == "true"
