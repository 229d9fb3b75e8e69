"""The quality gates: a failed expectation stops the run and is named; every outcome is recorded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cdp.errors import DataQualityError
from cdp.lake import AUDIENCE_MEMBERSHIP, IDENTITY_MAP, QUALITY_RESULTS, Lake
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import load_workspace
from jobs import check_quality

DAY = dt.date(2026, 11, 27)


def context(lake: str) -> RunContext:
    return RunContext(DAY, "test", Settings(workspace="", lake=lake, landing="", exports=""))


def write_identity_map(spark: SparkSession, lake: str, rows: list[tuple[str, str, str]]) -> None:
    data = [(DAY, ns, value, i, profile, DAY, DAY, i) for i, (ns, value, profile) in enumerate(rows)]
    spark.createDataFrame(data, IDENTITY_MAP.schema).write.format("delta").mode("overwrite").save(
        Lake(lake).path(IDENTITY_MAP))


def test_identity_in_two_profiles_fails_and_names_the_expectation(spark: SparkSession, lake: str,
                                                                  repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    write_identity_map(spark, lake, [("email", "a@x.com", "p1"), ("email", "a@x.com", "p2"), ("crm_id", "C1", "p1")])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "identities")
    message = str(caught.value)
    assert message.startswith("data-quality check 'identities' failed 1 of 6 expectations")
    assert "identity_map: expect_compound_columns_to_be_unique(column_list=['namespace', 'value']) FAILED" in message
    results = spark.read.format("delta").load(Lake(lake).path(QUALITY_RESULTS)).collect()
    assert sorted((r["suite"], r["expectation"], r["success"]) for r in results) == [
        ("identity_graphs", "expect_column_values_to_be_between", True),
        ("identity_graphs", "expect_column_values_to_be_between", True),
        ("identity_graphs", "expect_column_values_to_be_between", True),
        ("identity_map", "expect_column_values_to_not_be_null", True),
        ("identity_map", "expect_column_values_to_not_be_null", True),
        ("identity_map", "expect_compound_columns_to_be_unique", False),
    ]


def test_clean_identity_map_passes(spark: SparkSession, lake: str, repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    write_identity_map(spark, lake, [("email", "a@x.com", "p1"), ("crm_id", "C1", "p1")])
    outcomes = check_quality.run(spark, ws, context(lake), "identities")
    assert [o.success for o in outcomes] == [True] * 6


def test_collapsed_identity_graphs_fail(spark: SparkSession, lake: str, repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    # p1 holds two CRM ids; p2 holds 51 cookies (cap 50).
    write_identity_map(spark, lake, [("crm_id", "C1", "p1"), ("crm_id", "C2", "p1")]
                       + [("ecid", f"K{i}", "p2") for i in range(51)])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "identities")
    message = str(caught.value)
    assert message.startswith("data-quality check 'identities' failed 2 of 6 expectations")
    assert ("identity_graphs: expect_column_values_to_be_between(column='identities', max_value=50.0, min_value=1.0) "
            "FAILED") in message
    assert ("identity_graphs: expect_column_values_to_be_between(column='unique_crm_id', max_value=1.0, min_value=0.0) "
            "FAILED") in message


def test_membership_of_unknown_profile_fails(spark: SparkSession, lake: str, repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    profiles = spark.createDataFrame([(DAY, "p1")], "run_date date, profile_id string")
    profiles.write.format("delta").save(f"{lake}/profiles")
    ts = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    membership = spark.createDataFrame(
        [(DAY, "gold_members", "p1", "realized", ts, DAY), (DAY, "gold_members", "p9", "realized", ts, DAY)],
        AUDIENCE_MEMBERSHIP.schema)
    membership.write.format("delta").save(Lake(lake).path(AUDIENCE_MEMBERSHIP))
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "audiences")
    assert "audience_membership: expect_column_values_to_not_be_null(column='parent_found') FAILED" in str(caught.value)
    assert '"unexpected_count": 1' in str(caught.value)
