"""The rule compiler: every operator, null handling, nesting, event windows and shared counters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from cdp.audiences import (
    EventCounter,
    RuleError,
    classify,
    collect_event_counters,
    compile_rule,
    event_counters,
    transform_qualify,
    with_counters,
)
from cdp.workspace.models import AudienceSpec, Rule, Window

UTC = dt.UTC


def last_days_counter(event_type: str, dataset: str | None, days: int) -> EventCounter:
    return EventCounter(event_type, dataset, Window(last_days=days).model_dump_json(by_alias=True, exclude_none=True))


def audience(audience_id: str, rule: dict[str, Any]) -> AudienceSpec:
    return AudienceSpec.model_validate({"id": audience_id, "name": audience_id, "rule": rule})


def members_by_audience(profiles: DataFrame, audiences: list[AudienceSpec]) -> dict[str, list[str]]:
    """Every audience evaluated in one pass (as the job does); an audience nobody qualifies for maps to []."""
    out: dict[str, list[str]] = {a.id: [] for a in audiences}
    for row in transform_qualify(profiles, audiences).collect():
        out[row["audience_id"]].append(row["profile_id"])
    return {k: sorted(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def profiles(spark: SparkSession) -> DataFrame:
    schema = ("profile_id string, country string, zip string, email string, points long, birth_date date, "
              "updated_at timestamp, consent_marketing boolean")
    rows = [
        ("p1", "FR", "75001", "ann@example.com", 1500, dt.date(1990, 5, 1),
         dt.datetime(2026, 1, 10, 12, 0, tzinfo=UTC), True),
        ("p2", "DE", "10115", "bob@test.org", 999, dt.date(1985, 12, 31),
         dt.datetime(2026, 1, 9, 0, 0, tzinfo=UTC), False),
        ("p3", "FR", None, None, 1000, None, None, None),
        ("p4", None, "ABC", "Carl@Example.com", None, dt.date(2000, 1, 1),
         dt.datetime(2026, 1, 11, 8, 30, tzinfo=UTC), True),
    ]
    return spark.createDataFrame(rows, schema)


# rule -> exact members among p1..p4 (see the profiles fixture; p3 and p4 carry nulls)
ATTRIBUTE_CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({"attribute": "country", "op": "=", "value": "FR"}, ["p1", "p3"]),
    ({"attribute": "country", "op": "!=", "value": "FR"}, ["p2"]),  # null country is not "not FR"
    ({"attribute": "points", "op": "<", "value": 1000}, ["p2"]),
    ({"attribute": "points", "op": "<=", "value": 1000}, ["p2", "p3"]),
    ({"attribute": "points", "op": ">", "value": 999}, ["p1", "p3"]),
    ({"attribute": "points", "op": ">=", "value": 1000}, ["p1", "p3"]),
    ({"attribute": "country", "op": "in", "value": ["DE", "ES"]}, ["p2"]),
    ({"attribute": "country", "op": "not_in", "value": ["DE"]}, ["p1", "p3"]),
    ({"attribute": "country", "op": "exists"}, ["p1", "p2", "p3"]),
    ({"attribute": "country", "op": "missing"}, ["p4"]),
    ({"attribute": "points", "op": "between", "value": [999, 1000]}, ["p2", "p3"]),
    ({"attribute": "email", "op": "starts_with", "value": "ann"}, ["p1"]),
    ({"attribute": "email", "op": "ends_with", "value": "example.com"}, ["p1"]),  # case-sensitive
    ({"attribute": "email", "op": "contains", "value": "@"}, ["p1", "p2", "p4"]),
    ({"attribute": "email", "op": "regex", "value": r"^[a-z]+@test\."}, ["p2"]),
    # a string attribute compared with an unquoted YAML number: compared as text, no cast error on "ABC"
    ({"attribute": "zip", "op": "=", "value": 75001}, ["p1"]),
    ({"attribute": "birth_date", "op": "<", "value": "1990-01-01"}, ["p2"]),
    ({"attribute": "birth_date", "op": "between", "value": ["1990-01-01", "2000-01-01"]}, ["p1", "p4"]),
    ({"attribute": "birth_date", "op": "=", "value": dt.date(2000, 1, 1)}, ["p4"]),  # YAML's own date
    ({"attribute": "updated_at", "op": ">=", "value": "2026-01-10T00:00:00Z"}, ["p1", "p4"]),
    ({"attribute": "updated_at", "op": "=", "value": "2026-01-09"}, ["p2"]),  # a day is its midnight, UTC
    ({"attribute": "updated_at", "op": "<=", "value": "2026-01-10T13:00:00+01:00"}, ["p1", "p2"]),
    ({"attribute": "consent_marketing", "op": "=", "value": True}, ["p1", "p4"]),
    ({"attribute": "consent_marketing", "op": "!=", "value": True}, ["p2"]),
    # not over a false leaf: a null country compares false, so "not FR" includes p4
    ({"not": {"attribute": "country", "op": "=", "value": "FR"}}, ["p2", "p4"]),
    ({"not": {"attribute": "points", "op": "missing"}}, ["p1", "p2", "p3"]),
    ({"all": [{"attribute": "country", "op": "=", "value": "FR"},
              {"attribute": "points", "op": ">=", "value": 1000}]}, ["p1", "p3"]),
    ({"any": [{"attribute": "country", "op": "=", "value": "DE"},
              {"attribute": "points", "op": "missing"}]}, ["p2", "p4"]),
    ({"all": [{"any": [{"attribute": "country", "op": "=", "value": "FR"},
                       {"attribute": "country", "op": "=", "value": "DE"}]},
              {"not": {"attribute": "consent_marketing", "op": "=", "value": True}}]}, ["p2", "p3"]),
    ({"not": {"not": {"attribute": "consent_marketing", "op": "=", "value": False}}}, ["p2"]),
]


def test_attribute_operators_nulls_and_nesting(profiles: DataFrame) -> None:
    audiences = [audience(f"case_{i}", rule) for i, (rule, _) in enumerate(ATTRIBUTE_CASES)]
    found = members_by_audience(profiles, audiences)
    for i, (rule, expected) in enumerate(ATTRIBUTE_CASES):
        assert found[f"case_{i}"] == expected, rule


def test_compiled_rule_is_never_null(profiles: DataFrame) -> None:
    rule = Rule.model_validate({"any": [{"attribute": "country", "op": "=", "value": "FR"},
                                        {"attribute": "points", "op": ">", "value": 5000}]})
    values = {r["profile_id"]: r["hit"] for r in profiles.select("profile_id", compile_rule(
        rule, profiles.schema).alias("hit")).collect()}
    assert values == {"p1": True, "p2": False, "p3": True, "p4": False}


def test_rule_errors_name_the_audience(profiles: DataFrame) -> None:
    with pytest.raises(RuleError, match="audience 'x': attribute 'tier' is not a column of the profiles"):
        transform_qualify(profiles, [audience("x", {"attribute": "tier", "op": "exists"})])
    with pytest.raises(RuleError, match="'1st of May' is not an ISO date"):
        transform_qualify(profiles, [audience("y", {"attribute": "birth_date", "op": ">", "value": "1st of May"})])


# ---------------------------------------------------------------- events

RUN_DATE = dt.date(2026, 1, 31)


@pytest.fixture(scope="module")
def events(spark: SparkSession) -> DataFrame:
    day = lambda d: dt.date(2026, 1, d)  # noqa: E731
    rows = [
        ("p1", "web_events", "add_to_cart", day(25)),  # 6 days before the run date: inside 7 days
        ("p1", "web_events", "add_to_cart", day(24)),  # 7 days before: outside
        ("p1", "web_events", "add_to_cart", dt.date(2026, 2, 1)),  # after the run date: outside
        ("p1", "web_events", "purchase", day(31)),
        ("p2", "web_events", "add_to_cart", day(30)),
        ("p2", "web_events", "add_to_cart", day(31)),
        ("p3", "email_events", "add_to_cart", day(30)),
        ("p3", "email_events", "open", day(17)),  # 14 days before: outside a 14-day window
        ("p3", "email_events", "open", day(18)),  # 13 days before: inside
        ("p3", "email_events", "open", day(29)),
        ("p9", "web_events", "page_view", day(31)),  # a profile with events none of the rules count
    ]
    return spark.createDataFrame(rows, "profile_id string, dataset string, event_type string, event_date date")


EVENT_AUDIENCES = [
    audience("cart", {"all": [{"events": {"type": "add_to_cart", "at_least": 1, "within": {"last_days": 7}}},
                              {"not": {"events": {"type": "purchase", "at_least": 1, "within": {"last_days": 7}}}}]}),
    audience("web_cart_twice", {"events": {"type": "add_to_cart", "dataset": "web_events", "exactly": 2,
                                           "within": {"last_days": 7}}}),
    audience("no_cart", {"events": {"type": "add_to_cart", "at_most": 0, "within": {"last_days": 7}}}),
    audience("readers", {"events": {"type": "open", "dataset": "email_events", "at_least": 2,
                                    "within": {"last_days": 14}}}),
    audience("cart_twice", {"events": {"type": "add_to_cart", "at_least": 2, "within": {"last_days": 7}}}),
    audience("cart_once", {"all": [{"events": {"type": "add_to_cart", "at_most": 1, "within": {"last_days": 7}}},
                                   {"events": {"type": "add_to_cart", "at_least": 1, "within": {"last_days": 7}}}]}),
]


def test_counters_are_shared_and_windows_are_inclusive(events: DataFrame) -> None:
    conditions = collect_event_counters(EVENT_AUDIENCES)
    cart = last_days_counter("add_to_cart", None, 7)
    web_cart = last_days_counter("add_to_cart", "web_events", 7)
    opens = last_days_counter("open", "email_events", 14)
    purchase = last_days_counter("purchase", None, 7)
    # Six audiences, eight event conditions, four distinct counters.
    assert conditions == [cart, purchase, opens, web_cart]
    counters = event_counters(events, conditions, RUN_DATE)
    assert counters.columns == ["profile_id"] + [c.column for c in conditions]
    found = {r["profile_id"]: (r[cart.column], r[purchase.column], r[opens.column], r[web_cart.column])
             for r in counters.collect()}
    assert found == {
        "p1": (1, 1, 0, 1),
        "p2": (2, 0, 0, 2),
        "p3": (1, 0, 2, 0),
        "p9": (0, 0, 0, 0),
    }
    assert cart.bounds(RUN_DATE) == (dt.date(2026, 1, 25), RUN_DATE)


def test_event_rules_with_counts(spark: SparkSession, events: DataFrame) -> None:
    profiles = spark.createDataFrame([("p1", "FR"), ("p2", "DE"), ("p3", "FR"), ("p4", None)],
                                     "profile_id string, country string")
    conditions = collect_event_counters(EVENT_AUDIENCES)
    facts = with_counters(profiles, event_counters(events, conditions, RUN_DATE), conditions)
    assert members_by_audience(facts, EVENT_AUDIENCES) == {
        "cart": ["p2", "p3"],  # p1 bought
        "web_cart_twice": ["p2"],
        "no_cart": ["p4"],  # no events at all counts 0
        "readers": ["p3"],
        "cart_twice": ["p2"],
        "cart_once": ["p1", "p3"],
    }


def test_no_event_condition_means_no_counter_column(events: DataFrame) -> None:
    assert collect_event_counters([audience("a", {"attribute": "country", "op": "exists"})]) == []
    assert event_counters(events, [], RUN_DATE).columns == ["profile_id"]


# ---------------------------------------------------------------- the full rule language

RICH_DATE = dt.date(2026, 3, 31)


@pytest.fixture(scope="module")
def rich_events(spark: SparkSession) -> DataFrame:
    day = lambda d: RICH_DATE - dt.timedelta(days=d)  # noqa: E731  (days before the run date)
    rows = [
        ("p1", "web_events", "purchase", day(0), 30.0, "SKU-1"),
        ("p1", "web_events", "purchase", day(0), 80.0, "SKU-2"),
        ("p1", "web_events", "product_view", day(1), None, "SKU-1"),
        ("p1", "web_events", "product_view", day(2), None, "SKU-1"),
        ("p1", "web_events", "product_view", day(3), None, "SKU-3"),
        ("p2", "web_events", "purchase", day(30), 500.0, "SKU-9"),  # the edge of between 30 and 90 days ago
        ("p2", "web_events", "purchase", day(91), 700.0, "SKU-9"),  # beyond 90 days
        ("p2", "web_events", "purchase", day(-1), 900.0, "SKU-9"),  # after the run date: never counted
        ("p3", "web_events", "purchase", day(29), 5.0, "GIFT-1"),  # 29 days ago: not between 30 and 90
        ("p3", "email_events", "open", day(45), None, None),
        ("p4", "web_events", "purchase", dt.date(2026, 1, 15), 12.0, "SKU-4"),  # January
    ]
    return spark.createDataFrame(rows, "profile_id string, dataset string, event_type string, event_date date, "
                                       "field_revenue double, field_product_id string")


def purchases(**extra: Any) -> dict[str, Any]:
    return {"events": {"type": "purchase", **extra}}


RICH_AUDIENCES = [
    audience("big_basket", purchases(where=[{"field": "revenue", "op": ">", "value": 50}], at_least=1,
                                     within={"last_days": 7})),
    audience("sku_buyers", purchases(where=[{"field": "product_id", "op": "starts_with", "value": "SKU"},
                                            {"field": "revenue", "op": "<", "value": 600}], at_least=1,
                                     within={"between_days_ago": [30, 90]})),
    audience("bought_today_twice", purchases(exactly=2, within={"today": True})),
    audience("bought_in_january", purchases(at_least=1, within={"from": "2026-01-01", "to": "2026-01-31"})),
    audience("spent_100_today", purchases(aggregate={"fn": "sum", "field": "revenue", "op": ">=", "value": 100},
                                          within={"today": True})),
    audience("avg_basket_over_40", purchases(aggregate={"fn": "avg", "field": "revenue", "op": ">", "value": 40},
                                             within={"last_days": 365})),
    audience("min_basket_under_10", purchases(aggregate={"fn": "min", "field": "revenue", "op": "<", "value": 10},
                                              within={"last_days": 365})),
    audience("max_basket_between", purchases(aggregate={"fn": "max", "field": "revenue", "op": "between",
                                                        "value": [50, 100]}, within={"last_days": 365})),
    audience("browsed_2_products", {"events": {"type": "product_view", "aggregate": {
        "fn": "count_distinct", "field": "product_id", "op": ">=", "value": 2}, "within": {"last_days": 7}}}),
    audience("no_browsing", {"events": {"type": "product_view", "aggregate": {
        "fn": "count_distinct", "field": "product_id", "op": "=", "value": 0}, "within": {"last_days": 7}}}),
    audience("lapsed_buyers", {"last_event": {"type": "purchase", "more_than_days_ago": 29}}),
    audience("recent_buyers", {"last_event": {"type": "purchase", "less_than_days_ago": 30}}),
    audience("recent_readers", {"last_event": {"type": "open", "dataset": "email_events", "less_than_days_ago": 46}}),
]


def test_filters_windows_aggregates_and_recency(spark: SparkSession, rich_events: DataFrame) -> None:
    profiles = spark.createDataFrame([("p1",), ("p2",), ("p3",), ("p4",), ("p5",)], "profile_id string")
    conditions = collect_event_counters(RICH_AUDIENCES)
    facts = with_counters(profiles, event_counters(rich_events, conditions, RICH_DATE), conditions)
    assert members_by_audience(facts, RICH_AUDIENCES) == {
        "big_basket": ["p1"],
        "sku_buyers": ["p2", "p4"],  # p2's 700 is beyond 90 days; p3's GIFT is 29 days ago; p4: 75 days ago
        "bought_today_twice": ["p1"],
        "bought_in_january": ["p4"],
        "spent_100_today": ["p1"],  # 30 + 80
        "avg_basket_over_40": ["p1", "p2"],  # p1: (30 + 80) / 2; p2: (500 + 700) / 2, the future 900 left out
        "min_basket_under_10": ["p3"],
        "max_basket_between": ["p1"],  # p1's max is 80; p2's is 700
        "browsed_2_products": ["p1"],  # SKU-1 twice and SKU-3
        "no_browsing": ["p2", "p3", "p4", "p5"],  # count distinct of nothing is 0
        "lapsed_buyers": ["p2", "p4"],  # last purchase 30 and 75 days ago (the future one is ignored)
        "recent_buyers": ["p1", "p3"],  # p5 never bought: neither lapsed nor recent
        "recent_readers": ["p3"],
    }


def test_audience_of_audiences_in_dependency_order(spark: SparkSession) -> None:
    profiles = spark.createDataFrame([("p1", "FR", 1500), ("p2", "FR", 10), ("p3", "DE", 2000)],
                                     "profile_id string, country string, points long")
    audiences = [  # dependents first: the compiler orders them
        audience("french_not_rich", {"all": [{"audience": "french"}, {"not": {"audience": "rich"}}]}),
        audience("rich_french", {"all": [{"audience": "french"}, {"audience": "rich"}]}),
        audience("french", {"attribute": "country", "op": "=", "value": "FR"}),
        audience("rich", {"attribute": "points", "op": ">=", "value": 1000}),
    ]
    assert members_by_audience(profiles, audiences) == {
        "french_not_rich": ["p2"], "rich_french": ["p1"], "french": ["p1", "p2"], "rich": ["p1", "p3"]}
    with pytest.raises(RuleError, match="audience 'x' refers to unknown audience 'french'"):
        transform_qualify(profiles, [audience("x", {"audience": "french"})])
    with pytest.raises(RuleError, match="audiences form a cycle: a -> b -> a"):
        transform_qualify(profiles, [audience("a", {"audience": "b"}), audience("b", {"not": {"audience": "a"}})])


def test_nested_array_and_map_attributes(spark: SparkSession) -> None:
    profiles = spark.createDataFrame([
        ("p1", {"zip": "75001", "floor": 3}, ["vip", "vip"], {"churn": 0.9}),
        ("p2", {"zip": "10115", "floor": None}, ["vip", "new"], {"churn": 0.1, "ltv": 5.0}),
        ("p3", None, [], {}),
        ("p4", {"zip": None, "floor": 1}, None, None),
    ], "profile_id string, address struct<zip: string, floor: int>, tags array<string>, scores map<string, double>")
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"attribute": "address.zip", "op": "starts_with", "value": "75"}, ["p1"]),
        ({"attribute": "address.floor", "op": ">=", "value": 1}, ["p1", "p4"]),
        ({"attribute": "address.zip", "op": "missing"}, ["p3", "p4"]),
        ({"attribute": "tags", "op": "=", "value": "vip"}, ["p1", "p2"]),  # any element (the default)
        ({"attribute": "tags", "op": "=", "value": "vip", "match": "all"}, ["p1"]),  # [] matches neither
        ({"attribute": "tags", "op": "in", "value": ["new"], "match": "any"}, ["p2"]),
        ({"attribute": "tags", "op": "missing"}, ["p3", "p4"]),  # an empty array holds no value
        ({"attribute": "scores", "key": "churn", "op": ">", "value": 0.5}, ["p1"]),
        ({"attribute": "scores", "key": "ltv", "op": "exists"}, ["p2"]),
        ({"attribute": "scores", "op": "exists"}, ["p1", "p2", "p3"]),
    ]
    audiences = [audience(f"case_{i}", rule) for i, (rule, _) in enumerate(cases)]
    found = members_by_audience(profiles, audiences)
    for i, (rule, expected) in enumerate(cases):
        assert found[f"case_{i}"] == expected, rule


# ---------------------------------------------------------------- streaming eligibility

CLASSIFIED: list[tuple[dict[str, Any], str]] = [
    ({"attribute": "country", "op": "=", "value": "FR"}, "streaming-eligible (attribute conditions only)"),
    ({"all": [{"attribute": "country", "op": "=", "value": "FR"},
              {"events": {"type": "purchase", "where": [{"field": "revenue", "op": ">", "value": 10}],
                          "at_least": 1, "within": {"today": True}}}]},
     "streaming-eligible (one 'purchase' event today)"),
    ({"events": {"type": "open", "at_least": 1, "within": {"last_days": 1}}},
     "streaming-eligible (one 'open' event the last day)"),
    ({"events": {"type": "open", "at_least": 1, "within": {"last_days": 7}}},
     "batch only (event window of 7 days is over 24 hours)"),
    ({"events": {"type": "open", "at_least": 1, "within": {"between_days_ago": [30, 90]}}},
     "batch only (event window between 30 and 90 days ago is over 24 hours)"),
    ({"events": {"type": "open", "at_least": 1, "within": {"from": "2026-01-01", "to": "2026-01-31"}}},
     "batch only (absolute event window from 2026-01-01 to 2026-01-31 is over 24 hours)"),
    ({"events": {"type": "open", "at_least": 3, "within": {"today": True}}},
     "batch only (counting 'open' events (at_least: 3) needs the whole window; only one event (at_least: 1) "
     "streams)"),
    ({"events": {"type": "purchase", "aggregate": {"fn": "sum", "field": "revenue", "op": ">", "value": 5},
                 "within": {"today": True}}},
     "batch only (sum of event field 'revenue' needs the whole window)"),
    ({"not": {"events": {"type": "purchase", "at_least": 1, "within": {"today": True}}}},
     "batch only (the absence of 'purchase' events (under not) needs the whole window)"),
    ({"last_event": {"type": "purchase", "more_than_days_ago": 30}},
     "batch only (recency of the last 'purchase' event is judged daily)"),
    ({"any": [{"events": {"type": "open", "at_least": 1, "within": {"today": True}}},
              {"events": {"type": "click", "at_least": 1, "within": {"today": True}}}]},
     "batch only (several event conditions (open, click) that are not one ordered sequence)"),
    ({"sequence": {"first": {"type": "add_to_cart"}, "then": {"type": "purchase"}, "within_hours": 24,
                   "not_between": {"type": "remove"}, "within": {"last_days": 7}}},
     "streaming-eligible (ordered events 'add_to_cart' then 'purchase' within 24 hours)"),
    ({"sequence": {"first": {"type": "add_to_cart"}, "then": {"type": "purchase"}, "within_hours": 48,
                   "within": {"last_days": 7}}},
     "batch only (the sequence 'add_to_cart' then 'purchase' spans 48 hours, over 24 hours)"),
    ({"all": [{"audience": "base"}, {"attribute": "country", "op": "exists"}]},
     "batch only (event window of 7 days is over 24 hours)"),  # judged with the audience it names
]


def test_streaming_eligibility_and_reasons() -> None:
    base = audience("base", {"events": {"type": "open", "at_least": 1, "within": {"last_days": 7}}})
    for i, (rule, expected) in enumerate(CLASSIFIED):
        spec = audience(f"case_{i}", rule)
        assert classify(spec, {"base": base, spec.id: spec}).describe(spec.id) == f"audience case_{i}: {expected}"


# ---------------------------------------------------------------- ordered sequences


def test_ordered_sequences_with_limit_and_exclusion(spark: SparkSession) -> None:
    def at(day: int, hour: int) -> dt.datetime:
        return dt.datetime(2026, 3, day, hour, 0, tzinfo=UTC)

    rows = [
        ("p1", "add_to_cart", at(30, 10)), ("p1", "purchase", at(31, 9)),  # 23 h later
        ("p2", "add_to_cart", at(30, 10)), ("p2", "purchase", at(31, 11)),  # 25 h later: too late
        ("p3", "purchase", at(30, 9)), ("p3", "add_to_cart", at(30, 10)),  # wrong order
        ("p4", "add_to_cart", at(31, 8)), ("p4", "remove", at(31, 9)), ("p4", "purchase", at(31, 10)),
        ("p5", "add_to_cart", at(20, 8)), ("p5", "purchase", at(20, 9)),  # before the 7-day window
        ("p6", "add_to_cart", at(31, 8)), ("p6", "purchase", at(31, 8)),  # same instant: not "then"
        # two carts: the second one is followed by a purchase without a remove in between
        ("p7", "add_to_cart", at(31, 1)), ("p7", "remove", at(31, 2)), ("p7", "add_to_cart", at(31, 3)),
        ("p7", "purchase", at(31, 4)),
    ]
    events = spark.createDataFrame(
        [(p, "web_events", t, ts.date(), ts) for p, t, ts in rows],
        "profile_id string, dataset string, event_type string, event_date date, event_time timestamp")
    then = {"first": {"type": "add_to_cart"}, "then": {"type": "purchase"}, "within_hours": 24,
            "within": {"last_days": 7}}
    audiences = [audience("bought_within_a_day", {"sequence": then}),
                 audience("bought_without_removing", {"sequence": {**then, "not_between": {"type": "remove"}}})]
    profiles = spark.createDataFrame([(f"p{i}",) for i in range(1, 9)], "profile_id string")
    conditions = collect_event_counters(audiences)
    assert len(conditions) == 3  # add_to_cart, purchase and remove times, shared by both audiences
    facts = with_counters(profiles, event_counters(events, conditions, dt.date(2026, 3, 31)), conditions)
    assert members_by_audience(facts, audiences) == {
        "bought_within_a_day": ["p1", "p4", "p7"],
        "bought_without_removing": ["p1", "p7"],
    }
