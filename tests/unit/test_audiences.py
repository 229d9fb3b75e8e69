"""The rule compiler: every operator, null handling, nesting, event windows and shared counters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from cdp.audiences import (
    EventCounter,
    RuleError,
    collect_event_counters,
    compile_rule,
    event_counters,
    transform_qualify,
    with_counters,
)
from cdp.workspace.models import AudienceSpec, Rule

UTC = dt.UTC


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
    cart = EventCounter("add_to_cart", None, 7)
    web_cart = EventCounter("add_to_cart", "web_events", 7)
    opens = EventCounter("open", "email_events", 14)
    purchase = EventCounter("purchase", None, 7)
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
    assert cart.window(RUN_DATE) == (dt.date(2026, 1, 25), RUN_DATE)


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
