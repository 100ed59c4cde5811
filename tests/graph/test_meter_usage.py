"""meterUsage over HTTP (SPEC §14, U1–U8), on SQLite and PostgreSQL.

Events are ingested through the API into the past (a wide INGEST_PAST_WINDOW for these
tests), corrected through the API, and every number below is computed by hand.
"""

from datetime import timedelta
from typing import Any

import pytest

from db.settings import Settings
from tests.support import (
    GraphQLClient,
    bad_user_input,
    create_customer,
    event_input,
    ingest,
    now_utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

USAGE = """
query Usage($input: MeterUsageInput!) {
  meterUsage(input: $input) {
    meter { id } from to granularity timeZone total eventCount
    series {
      groupValues customer { id externalId } externalCustomerId total eventCount
      buckets { start end value eventCount }
    }
  }
}
"""

CREATE_METER = """
mutation Create($input: CreateMeterInput!) {
  createMeter(input: $input) { meter { id } userErrors { code field } }
}
"""

AMEND = """
mutation Amend($input: AmendEventInput!) {
  amendEvent(input: $input) { event { revision } userErrors { code } }
}
"""

DEPRECATE = """
mutation Deprecate($input: DeprecateEventInput!) {
  deprecateEvent(input: $input) { event { deprecated } userErrors { code } }
}
"""

DAY = "2026-01-10"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, ingest_past_window=timedelta(days=36500))


async def make_meter(
    api: GraphQLClient,
    aggregation: str,
    key: str | None = "tokens",
    *,
    event_name: str = "llm",
    filter: dict[str, Any] | None = None,
    dimensions: list[str] | None = None,
) -> str:
    meter_input: dict[str, Any] = {
        "name": f"{aggregation} meter",
        "eventName": event_name,
        "aggregation": {"type": aggregation, "key": key},
    }
    if filter is not None:
        meter_input["filter"] = filter
    if dimensions is not None:
        meter_input["dimensions"] = dimensions
    data = await api.data(CREATE_METER, {"input": meter_input})
    assert data["createMeter"]["userErrors"] == []
    meter_id: str = data["createMeter"]["meter"]["id"]
    return meter_id


async def usage(api: GraphQLClient, **fields: Any) -> dict[str, Any]:
    data = await api.data(USAGE, {"input": fields})
    answer: dict[str, Any] = data["meterUsage"]
    return answer


async def refused(api: GraphQLClient, **fields: Any) -> tuple[str, list[str]]:
    return await bad_user_input(api, USAGE, {"input": fields})


async def put(api: GraphQLClient, *events: tuple[str, str, dict[str, Any]], **common: Any) -> None:
    """Events (eventId, time of day on DAY in UTC, metadata) of event name llm."""
    payload = await ingest(
        api,
        [
            event_input(
                event_id,
                event_name=common.get("event_name", "llm"),
                external_customer_id=common.get("external_customer_id", "acme"),
                customer_id=common.get("customer_id"),
                timestamp=f"{DAY}T{time}Z",
                metadata=metadata,
            )
            for event_id, time, metadata in events
        ],
    )
    assert payload["userErrors"] == []


def whole_day(**fields: Any) -> dict[str, Any]:
    return {"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T23:59:59Z", **fields}


MIXED: list[tuple[str, str, dict[str, Any]]] = [
    ("e1", "01:00:00", {"tokens": 0.1, "model": "a"}),
    ("e2", "02:00:00", {"tokens": 0.2, "model": "b"}),
    ("e3", "03:00:00", {"tokens": 3, "model": "a"}),
    ("e4", "03:30:00", {"tokens": "7", "model": "a"}),  # a string: counted, not summed
    ("e5", "04:00:00", {"tokens": True}),  # a boolean is not a number
    ("e6", "05:00:00", {}),
]


@pytest.mark.parametrize(
    ("aggregation", "total"),
    [
        ("COUNT", "6"),
        ("SUM", "3.3"),
        ("MIN", "0.1"),
        ("MAX", "3"),
        ("AVG", "1.1"),
        ("LAST", "3"),
        ("UNIQUE_COUNT", "5"),  # 0.1, 0.2, 3, "7", true
    ],
)
async def test_u2_each_aggregation_over_typed_values(
    api: GraphQLClient, aggregation: str, total: str
) -> None:
    # Given numbers, a numeric string, a boolean and a missing key
    meter_id = await make_meter(api, aggregation)
    await put(api, *MIXED)
    # When the day's usage is asked for
    answer = await usage(api, meterId=meter_id, **whole_day())
    # Then the value aggregates only what U2 says, and every event is in eventCount
    assert (answer["total"], answer["eventCount"]) == (total, 6)
    [series] = answer["series"]
    assert (series["total"], series["eventCount"], series["groupValues"]) == (total, 6, {})


async def test_u3_exact_decimals_without_exponent_or_trailing_zeros(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "SUM")
    await put(
        api,
        ("a", "01:00:00", {"tokens": 0.1}),
        ("b", "01:00:01", {"tokens": 0.2}),
        ("c", "01:00:02", {"tokens": 1e20}),
        ("d", "01:00:03", {"tokens": -1e20}),
        ("e", "01:00:04", {"tokens": 2.7}),
    )
    answer = await usage(api, meterId=meter_id, **whole_day())
    assert answer["total"] == "3"  # 0.1 + 0.2 + 1e20 - 1e20 + 2.7, exactly
    average = await make_meter(api, "AVG")
    await put(api, ("f", "02:00:00", {"tokens": 1}), ("g", "02:00:01", {"tokens": 2}))
    answer = await usage(api, meterId=average, **whole_day())
    # (0.1 + 0.2 + 1e20 - 1e20 + 2.7 + 1 + 2) / 7 = 6/7, to 28 significant digits, half-even
    assert answer["total"] == "0.8571428571428571428571428571"


async def test_u3_empty_set_is_zero_or_null(api: GraphQLClient) -> None:
    for aggregation, empty in [
        ("COUNT", "0"),
        ("SUM", "0"),
        ("UNIQUE_COUNT", "0"),
        ("MIN", None),
        ("MAX", None),
        ("AVG", None),
        ("LAST", None),
    ]:
        meter_id = await make_meter(api, aggregation)
        answer = await usage(api, meterId=meter_id, **whole_day(granularity="HOUR"))
        # U6: without grouping, exactly one series, every bucket empty
        [series] = answer["series"]
        assert answer["total"] == empty
        assert answer["eventCount"] == 0
        assert len(series["buckets"]) == 24
        assert {bucket["value"] for bucket in series["buckets"]} == {empty}


async def test_u5_dense_buckets_clipped_to_the_range(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "SUM")
    await put(api, ("a", "01:10:00", {"tokens": 1}), ("b", "03:59:59.999999", {"tokens": 2}))
    answer = await usage(
        api,
        meterId=meter_id,
        **{"from": f"{DAY}T00:30:00Z", "to": f"{DAY}T04:15:00Z"},
        granularity="HOUR",
    )
    [series] = answer["series"]
    assert [(b["start"], b["end"], b["value"], b["eventCount"]) for b in series["buckets"]] == [
        (f"{DAY}T00:30:00.000000Z", f"{DAY}T01:00:00.000000Z", "0", 0),
        (f"{DAY}T01:00:00.000000Z", f"{DAY}T02:00:00.000000Z", "1", 1),
        (f"{DAY}T02:00:00.000000Z", f"{DAY}T03:00:00.000000Z", "0", 0),
        (f"{DAY}T03:00:00.000000Z", f"{DAY}T04:00:00.000000Z", "2", 1),
        (f"{DAY}T04:00:00.000000Z", f"{DAY}T04:15:00.000000Z", "0", 0),
    ]


async def test_u5_berlin_days_of_23_and_25_hours(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "COUNT", None)
    payload = await ingest(
        api,
        [
            # 2026-03-29 is 23 hours long in Berlin, 2026-10-25 25 hours.
            event_input("spring", event_name="llm", timestamp="2026-03-29T21:59:00Z"),
            event_input("autumn", event_name="llm", timestamp="2026-10-25T22:59:00Z"),
        ],
    )
    assert payload["userErrors"] == []
    answer = await usage(
        api,
        meterId=meter_id,
        **{"from": "2026-03-28T23:00:00Z", "to": "2026-03-30T22:00:00Z"},
        granularity="DAY",
        timeZone="Europe/Berlin",
    )
    buckets = answer["series"][0]["buckets"]
    assert [(b["start"], b["eventCount"]) for b in buckets] == [
        ("2026-03-28T23:00:00.000000Z", 1),
        ("2026-03-29T22:00:00.000000Z", 0),
    ]
    answer = await usage(
        api,
        meterId=meter_id,
        **{"from": "2026-10-24T22:00:00Z", "to": "2026-10-25T23:00:00Z"},
        granularity="HOUR",
        timeZone="Europe/Berlin",
    )
    buckets = answer["series"][0]["buckets"]
    assert len(buckets) == 25
    assert buckets[-1]["eventCount"] == 1
    assert answer["timeZone"] == "Europe/Berlin"
    assert answer["granularity"] == "HOUR"


async def test_u5_kolkata_hours_start_at_half_past(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "COUNT", None)
    await put(api, ("a", "01:29:59", {}), ("b", "01:30:00", {}))
    answer = await usage(
        api,
        meterId=meter_id,
        **{"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T03:00:00Z"},
        granularity="HOUR",
        timeZone="Asia/Kolkata",
    )
    buckets = answer["series"][0]["buckets"]
    assert [(b["start"], b["eventCount"]) for b in buckets] == [
        (f"{DAY}T00:00:00.000000Z", 0),
        (f"{DAY}T00:30:00.000000Z", 1),
        (f"{DAY}T01:30:00.000000Z", 1),
        (f"{DAY}T02:30:00.000000Z", 0),
    ]


async def test_u4_totals_come_from_events_not_from_buckets(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "UNIQUE_COUNT", "model")
    await put(api, *MIXED)
    answer = await usage(api, meterId=meter_id, **whole_day(granularity="HOUR"))
    values = [b["value"] for b in answer["series"][0]["buckets"]]
    # "a" is in the buckets of 01:00 and 03:00, "b" in 02:00: 3 when bucket values are
    # added, 2 in truth
    assert sum(int(value) for value in values) == 3
    assert answer["total"] == "2"
    average = await make_meter(api, "AVG")
    answer = await usage(api, meterId=average, **whole_day(granularity="HOUR"))
    # (0.1 + 0.2 + 3) / 3, not the mean of the bucket means (0.1, 0.2, 3)
    assert answer["total"] == "1.1"


# Without dimensions groupBy reads the raw events; by the meter's dimensions (all of them,
# or some), the rollups answer: the same answer either way.
@pytest.mark.parametrize("dimensions", [None, ["model"], ["region", "model"]])
async def test_u6_grouping_by_customer_and_keys(
    api: GraphQLClient, dimensions: list[str] | None
) -> None:
    meter_id = await make_meter(api, "SUM", dimensions=dimensions)
    acme = await create_customer(api, externalId="acme")
    plain = await create_customer(api)
    await put(api, ("a1", "01:00:00", {"tokens": 1, "model": "x"}))
    await put(api, ("a2", "01:00:00", {"tokens": 2, "model": 1}), customer_id=acme["id"])
    await put(api, ("p1", "02:00:00", {"tokens": 4, "model": "x"}), customer_id=plain["id"])
    await put(api, ("g1", "03:00:00", {"tokens": 8}), external_customer_id="ghost")
    await put(api, ("g2", "03:00:00", {"tokens": 16, "model": 1.0}), external_customer_id="ghost")
    answer = await usage(
        api, meterId=meter_id, **whole_day(), groupBy=["model"], groupByCustomer=True
    )
    got = [
        (
            series["customer"]["id"] if series["customer"] else None,
            series["externalCustomerId"],
            series["groupValues"],
            series["total"],
        )
        for series in answer["series"]
    ]
    first, second = sorted([acme["id"], plain["id"]])
    expected: dict[str, list[tuple[Any, ...]]] = {
        acme["id"]: [
            (acme["id"], None, {"model": 1}, "2"),
            (acme["id"], None, {"model": "x"}, "1"),
        ],
        plain["id"]: [(plain["id"], None, {"model": "x"}, "4")],
    }
    assert got == [
        *expected[first],
        *expected[second],
        (None, "ghost", {"model": 1}, "16"),
        (None, "ghost", {"model": None}, "8"),
    ]
    assert answer["total"] == "31"


async def test_u6_group_by_the_aggregated_key_itself(api: GraphQLClient) -> None:
    # Found by the U9 property test: on SQLite, grouping by the key the meter aggregates
    # read the group value from the wrong column (null, or a customer id parsed as JSON).
    meter_id = await make_meter(api, "SUM")
    acme = await create_customer(api, externalId="acme")
    await put(
        api,
        ("a", "01:00:00", {"tokens": 2}),
        ("b", "02:00:00", {"tokens": 2.0}),
        ("c", "03:00:00", {"tokens": 0.5}),
        ("d", "04:00:00", {}),
        customer_id=acme["id"],
    )
    answer = await usage(
        api, meterId=meter_id, **whole_day(), groupBy=["tokens"], groupByCustomer=True
    )
    assert [
        (series["customer"]["id"], series["groupValues"], series["total"], series["eventCount"])
        for series in answer["series"]
    ] == [
        (acme["id"], {"tokens": 0.5}, "0.5", 1),
        (acme["id"], {"tokens": 2}, "4", 2),
        (acme["id"], {"tokens": None}, "0", 1),
    ]


async def test_u6_true_and_1_are_different_groups(api: GraphQLClient) -> None:
    # Python holds True == 1 and hashed both to one series; U6 compares as M4 does.
    meter_id = await make_meter(api, "SUM")
    await put(
        api,
        ("a", "01:00:00", {"tokens": 1, "flag": True}),
        ("b", "02:00:00", {"tokens": 2, "flag": 1}),
        ("c", "03:00:00", {"tokens": 4, "flag": 1.0}),
        ("d", "04:00:00", {"tokens": 8, "flag": "1"}),
        ("e", "05:00:00", {"tokens": 16, "flag": False}),
        ("f", "06:00:00", {"tokens": 32, "flag": 0}),
    )
    answer = await usage(api, meterId=meter_id, **whole_day(granularity="HOUR"), groupBy=["flag"])
    assert [
        (series["groupValues"], series["total"], series["eventCount"])
        for series in answer["series"]
    ] == [
        ({"flag": False}, "16", 1),
        ({"flag": True}, "1", 1),
        ({"flag": 0}, "32", 1),
        ({"flag": 1}, "6", 2),
        ({"flag": "1"}, "8", 1),
    ]
    assert [bucket["value"] for bucket in answer["series"][1]["buckets"][:3]] == ["0", "1", "0"]


async def test_u1_customer_ids_match_by_id_and_by_external_id(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "SUM")
    acme = await create_customer(api, externalId="acme")
    await put(api, ("a1", "01:00:00", {"tokens": 1}))
    await put(api, ("a2", "01:00:00", {"tokens": 2}), customer_id=acme["id"])
    await put(api, ("o1", "01:00:00", {"tokens": 4}), external_customer_id="other")
    await put(api, ("z1", "01:00:00", {"tokens": 8}), external_customer_id="zed")
    answer = await usage(api, meterId=meter_id, **whole_day(), customerIds=[acme["id"]])
    assert answer["total"] == "3"
    answer = await usage(
        api, meterId=meter_id, **whole_day(), customerIds=[acme["id"]], externalCustomerIds=["zed"]
    )
    assert answer["total"] == "11"
    # An ad-hoc filter narrows the meter's own
    answer = await usage(
        api,
        meterId=meter_id,
        **whole_day(),
        filter={"clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 1}]},
    )
    assert answer["total"] == "14"


async def test_u1_u8_corrections_and_as_of(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "SUM")
    await create_customer(api, externalId="acme")  # C4: corrections need the customer
    await put(api, ("a", "01:00:00", {"tokens": 10}), ("b", "02:00:00", {"tokens": 5}))
    before = await usage(api, meterId=meter_id, **whole_day())
    as_of = now_utc().isoformat()
    # When one event is amended and the other deprecated, and a third one arrives
    data = await api.data(
        AMEND, {"input": {"eventId": "a", "eventName": "llm", "metadata": {"tokens": 1}}}
    )
    assert data["amendEvent"]["userErrors"] == []
    data = await api.data(DEPRECATE, {"input": {"eventId": "b"}})
    assert data["deprecateEvent"]["userErrors"] == []
    await put(api, ("c", "03:00:00", {"tokens": 100}))
    # Then usage now counts the amended body and leaves out the deprecated event (U1)
    after = await usage(api, meterId=meter_id, **whole_day())
    assert (before["total"], after["total"]) == ("15", "101")
    # And asOf the earlier moment reproduces the earlier answer exactly (U8)
    again = await usage(api, meterId=meter_id, **whole_day(), asOf=as_of)
    assert again["total"] == "15"
    assert again["series"] == before["series"]


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"to": f"{DAY}T00:00:00Z"}, "TIME_RANGE_INVALID", ["to"]),
        ({"timeZone": "Mars/Olympus"}, "TIME_ZONE_INVALID", ["timeZone"]),
        ({"timeZone": "../../etc/passwd"}, "TIME_ZONE_INVALID", ["timeZone"]),
        ({"groupBy": ["a", "b", "c", "d"]}, "GROUP_BY_INVALID", ["groupBy"]),
        ({"groupBy": ["a", "a"]}, "GROUP_BY_INVALID", ["groupBy", "1"]),
        ({"groupBy": [""]}, "GROUP_BY_INVALID", ["groupBy", "0"]),
        ({"groupBy": ["k" * 101]}, "GROUP_BY_INVALID", ["groupBy", "0"]),
        ({"customerIds": []}, "INVALID_INPUT", ["customerIds"]),
        ({"externalCustomerIds": ["x"] * 101}, "INVALID_INPUT", ["externalCustomerIds"]),
        ({"customerIds": ["cus_nope"]}, "CUSTOMER_NOT_FOUND", ["customerIds", "0"]),
        ({"meterId": "mtr_nope"}, "METER_NOT_FOUND", ["meterId"]),
        (
            {"filter": {"clauses": [{"key": "k", "operator": "LESS_THAN", "value": "x"}]}},
            "FILTER_INVALID",
            ["filter", "clauses", "0", "value"],
        ),
        (
            {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "granularity": "MINUTE"},
            "USAGE_RESULT_TOO_LARGE",
            ["granularity"],
        ),
        (
            {"from": "0001-01-01T00:00:00Z", "to": "0001-02-01T00:00:00Z", "granularity": "DAY"},
            "TIME_RANGE_INVALID",
            ["from"],
        ),
    ],
)
async def test_u7_bounds_with_code_and_field(
    api: GraphQLClient, fields: dict[str, Any], reason: str, field: list[str]
) -> None:
    meter_id = await make_meter(api, "COUNT", None)
    assert await refused(api, **{"meterId": meter_id, **whole_day(), **fields}) == (reason, field)


async def test_u7_too_many_series(api: GraphQLClient, settings: Settings) -> None:
    meter_id = await make_meter(api, "COUNT", None)
    await put(api, *[(f"e{index}", "01:00:00", {"n": index}) for index in range(5)])
    fields = {"meterId": meter_id, **whole_day(granularity="HOUR")}
    # 24 buckets × 5 series fits in 10 000; 10 000 buckets × 5 series does not
    answer = await usage(api, **fields, groupBy=["n"])
    assert len(answer["series"]) == 5
    # 2340 MINUTE buckets fit alone; × 5 series they do not
    minutes = {"from": "2026-01-09T08:00:00Z", "to": f"{DAY}T23:00:00Z", "granularity": "MINUTE"}
    assert await refused(api, **{**fields, **minutes, "groupBy": ["n"]}) == (
        "USAGE_RESULT_TOO_LARGE",
        ["groupBy"],
    )


async def test_u7_ten_thousand_years_in_one_bucket(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "COUNT", None)
    await put(api, ("a", "01:00:00", {}))
    answer = await usage(
        api, meterId=meter_id, **{"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
    )
    assert answer["total"] == "1"
    assert len(answer["series"][0]["buckets"]) == 1


async def test_u7_another_business_meter_and_customer_do_not_exist(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    meter_id = await make_meter(api, "COUNT", None)
    customer = await create_customer(api, externalId="acme")
    own_meter = await make_meter(other_api, "COUNT", None)
    assert await refused(other_api, meterId=meter_id, **whole_day()) == (
        "METER_NOT_FOUND",
        ["meterId"],
    )
    assert await refused(
        other_api, meterId=own_meter, **whole_day(), customerIds=[customer["id"]]
    ) == ("CUSTOMER_NOT_FOUND", ["customerIds", "0"])


async def test_u1_archived_meter_can_be_queried(api: GraphQLClient) -> None:
    meter_id = await make_meter(api, "COUNT", None)
    await put(api, ("a", "01:00:00", {}))
    data = await api.data(
        "mutation A($id: ID!) { archiveMeter(input: {id: $id}) { userErrors { code } } }",
        {"id": meter_id},
    )
    assert data["archiveMeter"]["userErrors"] == []
    assert (await usage(api, meterId=meter_id, **whole_day()))["total"] == "1"
