"""Membership statuses across days (realized, existing, exited, retention, re-entry) and event linking."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.audiences import RuleError
from cdp.events import transform_events
from cdp.lake import AUDIENCE_CATALOG, AUDIENCE_MEMBERSHIP, PROFILE_ID_CHANGES, PROFILES, Lake
from cdp.run_context import RunContext
from cdp.schemas import spark_type
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import check_quality, evaluate_audiences
from jobs.evaluate_audiences import EXITED_RETENTION_DAYS, transform_statuses

D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
MEMBERSHIP = cast(T.StructType, AUDIENCE_MEMBERSHIP.schema)  # declared for this table


def end_of(day: dt.date) -> str:
    """The evaluation time of a run date (RunContext.evaluation_time), in UTC as rows_of formats it."""
    return f"{day + dt.timedelta(days=1)}T00:00:00"


def ctx_for(day: dt.date, lake: str, tmp: Path) -> RunContext:
    return RunContext(day, "test", Settings(workspace="", lake=lake, landing=str(tmp / "landing"),
                                            exports=str(tmp / "exports")))


def rows_of(df: DataFrame) -> dict[str, tuple[Any, ...]]:
    """profile_id -> (status, status_since, last_qualification_time in UTC), for one audience."""
    # Formatted by Spark (session time zone UTC): collected timestamps would be in the test machine's zone.
    time = F.date_format("last_qualification_time", "yyyy-MM-dd'T'HH:mm:ss").alias("time")
    return {r["profile_id"]: (r["status"], r["status_since"], r["time"])
            for r in df.select("profile_id", "status", "status_since", time).collect()}


def test_status_transitions_retention_and_reentry(spark: SparkSession) -> None:
    def qualified(*profile_ids: str) -> DataFrame:
        return spark.createDataFrame([("a", p) for p in profile_ids], "audience_id string, profile_id string")

    # Every profile exists on every day and none is merged: only the rules decide.
    profiles = spark.createDataFrame([(p, False) for p in ("p1", "p2", "p3")], "profile_id string, excluded boolean")
    no_merges = spark.createDataFrame([], "previous_profile_id string, profile_id string")

    def day(run_date: dt.date, previous: DataFrame, *profile_ids: str) -> DataFrame:
        out = transform_statuses(qualified(*profile_ids), previous, run_date,
                                 dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC),
                                 profiles, no_merges)
        return spark.createDataFrame(out.collect(), MEMBERSHIP)  # cut the lineage, as a table would

    empty = spark.createDataFrame([], MEMBERSHIP)
    day1 = day(D1, empty, "p1", "p2")
    assert day1.columns == MEMBERSHIP.names
    assert rows_of(day1) == {"p1": ("realized", D1, end_of(D1)), "p2": ("realized", D1, end_of(D1))}
    assert {r["run_date"] for r in day1.collect()} == {D1}

    day2 = day(D2, day1, "p1", "p3")
    assert rows_of(day2) == {
        "p1": ("existing", D1, end_of(D2)),  # still qualifies: status_since kept
        "p2": ("exited", D2, end_of(D1)),  # left: last qualification kept
        "p3": ("realized", D2, end_of(D2)),
    }

    day3 = day(D3, day2, "p2")
    assert rows_of(day3) == {
        "p1": ("exited", D3, end_of(D2)),
        "p2": ("realized", D3, end_of(D3)),  # re-entry after an exit is a new realization
        "p3": ("exited", D3, end_of(D2)),
    }

    last_kept = D3 + dt.timedelta(days=EXITED_RETENTION_DAYS - 1)
    day4 = day(last_kept, day3)
    assert rows_of(day4) == {
        "p1": ("exited", D3, end_of(D2)),  # 29 days after exiting: carried forward as is
        "p2": ("exited", last_kept, end_of(D3)),
        "p3": ("exited", D3, end_of(D2)),
    }

    day5 = day(last_kept + dt.timedelta(days=1), day4)
    assert rows_of(day5) == {"p2": ("exited", last_kept, end_of(D3))}  # p1, p3: 30 days, dropped


def test_transform_events_links_normalised_identities(spark: SparkSession, repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    schema = ws.schema_of("email_events")
    utc = dt.UTC
    raw = spark.createDataFrame([
        ("e1", "open", dt.datetime(2026, 3, 3, 23, 59, tzinfo=utc), " Ann@Example.COM ", D3),
        ("e2", "open", dt.datetime(2026, 3, 1, 0, 0, tzinfo=utc), "ann@example.com", D2),
        ("e3", "open", dt.datetime(2026, 2, 28, 23, 59, tzinfo=utc), "ann@example.com", D2),  # before the window
        ("e4", "open", dt.datetime(2026, 3, 3, 10, 0, tzinfo=utc), "ann@example.com", dt.date(2026, 3, 4)),  # late
        ("e5", "click", dt.datetime(2026, 3, 3, 10, 0, tzinfo=utc), "ann@example.com", D3),  # not counted
        ("e6", "open", dt.datetime(2026, 3, 3, 10, 0, tzinfo=utc), "nobody@example.com", D3),  # no profile
    ], "event_id string, event_type string, timestamp timestamp, email string, _batch_date date")
    identity_map = spark.createDataFrame([("email", "ann@example.com", "prof_a"), ("crm_id", "C1", "prof_a")],
                                         "namespace string, value string, profile_id string")
    out = transform_events(raw, identity_map, "email_events", schema, "email", "email", D3, 3, ["open"])
    assert out.columns == ["profile_id", "dataset", "event_type", "event_date", "event_time"]
    assert sorted(tuple(r)[:4] for r in out.collect()) == [
        ("prof_a", "email_events", "open", dt.date(2026, 3, 1)),
        ("prof_a", "email_events", "open", dt.date(2026, 3, 3)),
    ]


# ---------------------------------------------------------------- the job against a lake


def write_profiles(spark: SparkSession, ws: Workspace, lake: str,
                   days: dict[dt.date, dict[str, dict[str, Any]]]) -> None:
    """Write PROFILES snapshots: run date -> profile_id -> attribute values (others null)."""
    attributes = ws.profile_attributes()
    schema = T.StructType([
        T.StructField("run_date", T.DateType()), T.StructField("profile_id", T.StringType()),
        T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
        T.StructField("identity_count", T.IntegerType()),
        *[T.StructField(name, spark_type(spec)) for name, spec in attributes.items()],
    ])
    rows = [(day, pid, {"crm_id": [pid.upper()]}, 1, *[values.get(name) for name in attributes])
            for day, profiles in days.items() for pid, values in profiles.items()]
    spark.createDataFrame(rows, schema).write.format("delta").mode("append").partitionBy("run_date").save(
        Lake(lake).path(PROFILES))


def snapshots(spark: SparkSession, lake: str) -> dict[dt.date, dict[tuple[str, str], tuple[str, dt.date]]]:
    """run_date -> (audience_id, profile_id) -> (status, status_since), read in one go."""
    out: dict[dt.date, dict[tuple[str, str], tuple[str, dt.date]]] = {}
    for r in spark.read.format("delta").load(Lake(lake).path(AUDIENCE_MEMBERSHIP)).collect():
        out.setdefault(r["run_date"], {})[(r["audience_id"], r["profile_id"])] = (r["status"], r["status_since"])
    return out


def test_run_over_three_days_and_backfill(spark: SparkSession, lake: str, tmp_path: Path, repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    french = {"country": "FR", "points": 1200, "consent_marketing": True}
    write_profiles(spark, ws, lake, {
        D1: {"p1": {"tier": "gold"}, "p2": {"tier": "silver"}},
        D2: {"p1": {"tier": "gold"}, "p2": {"tier": "platinum"}},
        D3: {"p1": {"tier": "silver"}, "p2": {"tier": "platinum", **french}},
    })

    for day in (D1, D2, D3):
        metrics = evaluate_audiences.run(spark, ws, ctx_for(day, lake, tmp_path))
    assert metrics == {
        "audiences": 4,
        "excluded.event_cap": 0, "excluded.identity_cap": 0,  # within the default segmentation guardrails
        # D3's exits: p1 left gold_members because the rules no longer match
        "exits.not_qualified": 1, "exits.excluded": 0, "exits.profile_merged": 0, "exits.profile_removed": 0,
        "gold_members.size": 1, "gold_members.realized": 0, "gold_members.existing": 1, "gold_members.exited": 1,
        "french_high_points.size": 1, "french_high_points.realized": 1, "french_high_points.existing": 0,
        "french_high_points.exited": 0,
        # no event table yet: no one has events, so no one qualifies
        **{f"{a}.{m}": 0 for a in ("cart_abandoners", "engaged_readers")
           for m in ("size", "realized", "existing", "exited")},
    }
    expected = {
        D1: {("gold_members", "p1"): ("realized", D1)},
        D2: {("gold_members", "p1"): ("existing", D1), ("gold_members", "p2"): ("realized", D2)},
        D3: {("gold_members", "p1"): ("exited", D3), ("gold_members", "p2"): ("existing", D2),
             ("french_high_points", "p2"): ("realized", D3)},
    }
    assert snapshots(spark, lake) == expected

    # Backfilling day 2 after day 3 reproduces day 2 (from day 1's snapshot) and leaves the others alone.
    evaluate_audiences.run(spark, ws, ctx_for(D2, lake, tmp_path))
    assert snapshots(spark, lake) == expected
    # The eligibility of every audience is stored per run date, and the membership table has its change feed.
    catalog = spark.read.format("delta").load(Lake(lake).path(AUDIENCE_CATALOG)).where(F.col("run_date") == D3)
    assert sorted((r["audience_id"], r["evaluation"], r["reason"]) for r in catalog.collect()) == [
        ("cart_abandoners", "batch", "event window of 7 days is over 24 hours"),
        ("engaged_readers", "batch", "event window of 14 days is over 24 hours"),
        ("french_high_points", "streaming", "attribute conditions only"),
        ("gold_members", "streaming", "attribute conditions only"),
    ]
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{Lake(lake).path(AUDIENCE_MEMBERSHIP)}`").first()
    assert detail is not None and detail["properties"]["delta.enableChangeDataFeed"] == "true"
    changes = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0)
               .load(Lake(lake).path(AUDIENCE_MEMBERSHIP)).where(F.col("run_date") == D3))
    assert {(r["profile_id"], r["status"]) for r in changes.where(F.col("_change_type") == "insert").collect()} \
        >= {("p1", "exited"), ("p2", "existing")}

    # A preview reads the current lake and writes nothing.
    version = spark.sql(f"DESCRIBE HISTORY delta.`{Lake(lake).path(AUDIENCE_MEMBERSHIP)}`").count()
    assert evaluate_audiences.preview(spark, ws, ctx_for(D3, lake, tmp_path), "gold_members") == (1, ["p2"])
    assert evaluate_audiences.preview(spark, ws, ctx_for(D2, lake, tmp_path), "gold_members", 1) == (2, ["p1"])
    assert spark.sql(f"DESCRIBE HISTORY delta.`{Lake(lake).path(AUDIENCE_MEMBERSHIP)}`").count() == version
    with pytest.raises(RuleError, match="audience 'gold' is not defined"):
        evaluate_audiences.preview(spark, ws, ctx_for(D3, lake, tmp_path), "gold")


def test_transform_events_carries_fields_and_reads_all_history(spark: SparkSession, repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    schema = ws.schema_of("email_events")
    utc = dt.UTC
    raw = spark.createDataFrame([
        ("e1", "open", dt.datetime(2020, 1, 1, 8, 0, tzinfo=utc), "ann@example.com", "c1", dt.date(2020, 1, 1)),
        ("e2", "open", dt.datetime(2026, 3, 4, 0, 0, tzinfo=utc), "ann@example.com", "c2", D3),  # after D3
    ], "event_id string, event_type string, timestamp timestamp, email string, campaign_id string, _batch_date date")
    identity_map = spark.createDataFrame([("email", "ann@example.com", "prof_a")],
                                         "namespace string, value string, profile_id string")
    fields = {"campaign_id": T.StringType(), "revenue": T.DoubleType()}  # revenue: a web field, null here
    out = transform_events(raw, identity_map, "email_events", schema, "email", "email", D3, None, ["open"], fields)
    assert out.columns == ["profile_id", "dataset", "event_type", "event_date", "event_time", "field_campaign_id",
                           "field_revenue"]
    assert out.schema["field_revenue"].dataType == T.DoubleType()
    assert [(r["event_date"], r["field_campaign_id"], r["field_revenue"]) for r in out.collect()] == [
        (dt.date(2020, 1, 1), "c1", None)]


def test_merged_removed_and_excluded_profiles_exit_with_a_reason(spark: SparkSession) -> None:
    time_d1 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    previous = spark.createDataFrame([
        (D1, "a", "p1", "realized", time_d1, D1, None, None),
        (D1, "a", "p2", "existing", time_d1, D1, None, None),  # merged into p1 on D2
        (D1, "a", "p3", "realized", time_d1, D1, None, None),  # its identities are gone on D2
        (D1, "a", "p4", "realized", time_d1, D1, None, None),  # over a segmentation guardrail on D2
        (D1, "a", "p5", "exited", time_d1, D1, "not_qualified", None),  # exited on D1, merged into p1 on D2
        (D1, "a", "p6", "exited", time_d1, D1, "profile_merged", "p9"),  # merged on D1: carried as it was
        (D1, "a", "p7", "realized", time_d1, D1, None, None),  # no longer qualifies
    ], MEMBERSHIP)
    qualified = spark.createDataFrame([("a", "p1"), ("a", "p8")], "audience_id string, profile_id string")
    profiles = spark.createDataFrame([("p1", False), ("p4", True), ("p7", False), ("p8", False)],
                                     "profile_id string, excluded boolean")
    # p8: the part of a split that got a new id; a merge row names the id merged away and the survivor.
    merges = spark.createDataFrame([("p2", "p1"), ("p5", "p1")], "previous_profile_id string, profile_id string")
    out = transform_statuses(qualified, previous, D2, dt.datetime(2026, 3, 3, tzinfo=dt.UTC), profiles, merges)
    assert out.columns == MEMBERSHIP.names
    rows = {r["profile_id"]: (r["status"], r["status_since"], r["exit_reason"], r["merged_into"])
            for r in out.collect()}
    assert rows == {
        "p1": ("existing", D1, None, None),  # the survivor: its own evaluation against its own memberships
        "p2": ("exited", D2, "profile_merged", "p1"),
        "p3": ("exited", D2, "profile_removed", None),
        "p4": ("exited", D2, "excluded", None),
        "p5": ("exited", D2, "profile_merged", "p1"),  # re-stamped: its id is gone, the row says why
        "p6": ("exited", D1, "profile_merged", "p9"),
        "p7": ("exited", D2, "not_qualified", None),
        "p8": ("realized", D2, None, None),
    }


def test_a_table_without_exit_reason_gains_it_and_merged_profiles_pass_the_gate(
        spark: SparkSession, lake: str, tmp_path: Path, repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    path = Lake(lake).path(AUDIENCE_MEMBERSHIP)
    # A membership table as the release before exit_reason wrote it (6 columns, change data feed on).
    old_schema = T.StructType(MEMBERSHIP.fields[:6])
    time_d1 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    spark.createDataFrame([(D1, "gold_members", p, "realized", time_d1, D1) for p in ("pa", "pb", "pc")],
                          old_schema).write.format("delta").partitionBy("run_date").option(
        "delta.enableChangeDataFeed", "true").save(path)
    write_profiles(spark, ws, lake, {D1: {p: {"tier": "gold"} for p in ("pa", "pb", "pc")},
                                     D2: {"pa": {"tier": "gold"}}})
    # On D2, pb merged into pa; pc's identities are gone (no change row).
    changes = spark.createDataFrame([(D2, "merge", "pa", "pb", D1, 2)], cast(T.StructType, PROFILE_ID_CHANGES.schema))
    changes.write.format("delta").save(Lake(lake).path(PROFILE_ID_CHANGES))

    metrics = evaluate_audiences.run(spark, ws, ctx_for(D2, lake, tmp_path))
    assert {k: v for k, v in metrics.items() if k.startswith("exits.") or k.startswith("gold_members.")} == {
        "exits.not_qualified": 0, "exits.excluded": 0, "exits.profile_merged": 1, "exits.profile_removed": 1,
        "gold_members.size": 1, "gold_members.realized": 0, "gold_members.existing": 1, "gold_members.exited": 2,
    }
    table = spark.read.format("delta").load(path)
    assert table.columns == MEMBERSHIP.names
    assert sorted(tuple(r) for r in table.select("run_date", "profile_id", "status", "exit_reason", "merged_into")
                  .collect()) == [
        (D1, "pa", "realized", None, None), (D1, "pb", "realized", None, None), (D1, "pc", "realized", None, None),
        (D2, "pa", "existing", None, None), (D2, "pb", "exited", "profile_merged", "pa"),
        (D2, "pc", "exited", "profile_removed", None),
    ]
    # The audience gate accepts exactly these rows (the day-2 failure of issue 9).
    outcomes = check_quality.run(spark, ws, ctx_for(D2, lake, tmp_path), "audiences")
    assert [(o.suite, o.success) for o in outcomes if o.suite.startswith("audience_membership")] == [
        ("audience_membership", True), ("audience_membership", True), ("audience_membership", True),
        ("audience_membership_keys", True)]
