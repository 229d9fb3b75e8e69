"""The quality gates: each one fails on doctored data with a message that names it, with counts and
hashed (or platform-built) samples, never a raw identity; every outcome is recorded."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from cdp.errors import DataQualityError
from cdp.lake import (
    AUDIENCE_MEMBERSHIP,
    BATCH_LEDGER,
    DATASET,
    IDENTITY_MAP,
    QUALITY_RESULTS,
    QUARANTINE,
    RUN_METRICS,
    STAGING,
    Lake,
)
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import check_quality

DAY = dt.date(2026, 11, 27)
BEFORE = dt.date(2026, 11, 26)
FILE = "/landing/crm/2026-11-27/crm.csv"


def context(lake: str) -> RunContext:
    return RunContext(DAY, "test", Settings(workspace="", lake=lake, landing="", exports=""))


def sha12(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


@pytest.fixture(scope="module")
def ws(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


def failure_lines(caught: pytest.ExceptionInfo[DataQualityError]) -> list[str]:
    """The first line of the error and one line per failed expectation."""
    return str(caught.value).splitlines()


# ---------------------------------------------------------------- ingest


def write_ingest_lake(spark: SparkSession, lake: str, ledger: list[tuple[Any, ...]] | None = None,
                      quarantined_files: list[str] | None = None, staged: list[tuple[str | None, str]] | None = None,
                      table: list[str] | None = None, previous_total: int = 1) -> None:
    """One landed CRM file: 3 rows read, 2 valid (C1, C2) and 1 quarantined; the table held C0 the day before."""
    at = Lake(lake)
    ledger = ledger if ledger is not None else [("crm_profiles", DAY, FILE, 3, 2, 1, "ok", "r1", "abc", 0)]
    spark.createDataFrame(ledger, BATCH_LEDGER.schema).write.format("delta").save(at.path(BATCH_LEDGER))
    reasons = [("missing_required", "crm_id", "a required field is missing")]
    quarantine = [("crm_profiles", DAY, f, 4, "raw record", reasons) for f in
                  (quarantined_files if quarantined_files is not None else [FILE])]
    spark.createDataFrame(quarantine, QUARANTINE.schema).write.format("delta").save(at.path(QUARANTINE))
    rows = staged if staged is not None else [("C1", FILE), ("C2", FILE)]
    spark.createDataFrame([(k, f, DAY) for k, f in rows], "crm_id string, _source_file string, _batch_date date") \
        .write.format("delta").save(at.path(STAGING, "crm_profiles"))
    keys = table if table is not None else ["C0", "C1", "C2"]
    spark.createDataFrame([(k,) for k in keys], "crm_id string").write.format("delta").save(
        at.path(DATASET, "crm_profiles"))
    spark.createDataFrame([(BEFORE, "ingest", "crm_profiles", "rows_total", previous_total)],
                          RUN_METRICS.schema).write.format("delta").save(at.path(RUN_METRICS))


def test_clean_ingest_passes_and_is_recorded(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_ingest_lake(spark, lake)
    outcomes = check_quality.run(spark, ws, context(lake), "ingest")
    assert [(o.suite, o.expectation, o.kwargs, o.success) for o in outcomes] == [
        ("crm_profiles_files", "expect_column_values_to_be_null", "column='count_problem'", True),
        ("crm_profiles_files", "expect_column_values_to_be_null", "column='quarantine_problem'", True),
        ("crm_profiles_files", "expect_column_values_to_be_null", "column='staging_problem'", True),
        ("crm_profiles_files", "expect_column_values_to_be_null", "column='status_problem'", True),
        ("crm_profiles_volume", "expect_column_values_to_be_null", "column='empty_day_problem'", True),
        ("crm_profiles_volume", "expect_column_values_to_be_null", "column='shrink_problem'", True),
        ("crm_profiles_ingested", "expect_column_values_to_not_be_null", "column='crm_id'", True),
        ("crm_profiles_ingested", "expect_column_values_to_be_null", "column='missing'", True),
    ]
    recorded = spark.read.format("delta").load(Lake(lake).path(QUALITY_RESULTS)).collect()
    assert sorted((r["run_date"], r["stage"], r["suite"], r["success"]) for r in recorded)[0] == (
        DAY, "ingest", "crm_profiles_files", True)
    assert len(recorded) == 8


def ledger_row(file: str, read: int, valid: int, quarantined: int, status: str = "ok",
               dataset: str = "crm_profiles") -> tuple[Any, ...]:
    return (dataset, DAY, file, read, valid, quarantined, status, "r1", "abc", 0)


def landed(name: str, folder: str = "crm") -> str:
    return f"/landing/{folder}/2026-11-27/{name}"


# Small checked frames go to GX's pandas engine, larger ones to its Spark engine (cdp.quality.CDP_GX_LOCAL_ROWS):
# both must report the same outcomes, counts and sample hashes.
ENGINES = pytest.mark.parametrize("local_rows", ["0", "100000"], ids=["spark", "pandas"])


@ENGINES
def test_each_ingest_gate_fails_on_its_doctored_file(spark: SparkSession, lake: str, ws: Workspace, local_rows: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_GX_LOCAL_ROWS", local_rows)
    # crm_profiles: one doctored file per file-level gate, a staged key the table lacks, a staged row without
    # its key; loyalty_members: files landed without a valid row, and a table smaller than the day before.
    a, b, c, d, e, f = (landed(n) for n in ("a.csv", "b.csv", "c.csv", "d.csv", "e.csv", "f.csv"))
    loyalty = landed("l.parquet", "loyalty")
    write_ingest_lake(
        spark, lake,
        ledger=[ledger_row(a, 4, 2, 1),  # rows_read != rows_valid + rows_quarantined
                ledger_row(b, 3, 2, 1),  # no quarantine row
                ledger_row(c, 3, 2, 1),  # one staged row of two
                ledger_row(d, 1, 1, 0, status="staged"),  # ingest did not mark it ingested
                # e: staged, no ledger row
                ledger_row(f, 1, 1, 0),  # its staged row has no key
                ledger_row(loyalty, 2, 0, 2, dataset="loyalty_members")],
        quarantined_files=[a, c],
        staged=[("C1", a), ("C2", a), ("C3", b), ("C4", b), ("C5", c), ("C6", d), ("C7", e), (None, f)],
        table=["C0", "C1", "C3", "C4", "C5", "C6", "C7"])  # C2 never reached the table
    at = Lake(lake)
    reasons = [("missing_required", "loyalty_id", "a required field is missing")]
    spark.createDataFrame([("loyalty_members", DAY, loyalty, i, "raw", reasons) for i in (1, 2)],
                          QUARANTINE.schema).write.format("delta").mode("append").save(at.path(QUARANTINE))
    spark.createDataFrame([("L1",), ("L2",)], "loyalty_id string").write.format("delta").save(
        at.path(DATASET, "loyalty_members"))
    spark.createDataFrame([(BEFORE, "ingest", "loyalty_members", "rows_total", 5)], RUN_METRICS.schema).write.format(
        "delta").mode("append").save(at.path(RUN_METRICS))

    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "ingest")
    assert failure_lines(caught) == [
        "data-quality check 'ingest' failed 8 of 14 expectations; the run stops here so that bad data does not "
        "flow on:",
        "  - crm_profiles_files: expect_column_values_to_be_null(column='count_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 16.666666666666664, "unexpected_samples": '
        f'["{a}: rows_read 4 != rows_valid 2 + rows_quarantined 1"]}}',
        "  - crm_profiles_files: expect_column_values_to_be_null(column='quarantine_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 16.666666666666664, "unexpected_samples": '
        f'["{b}: 0 quarantine row(s), batch_ledger rows_quarantined 1"]}}',
        "  - crm_profiles_files: expect_column_values_to_be_null(column='staging_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 16.666666666666664, "unexpected_samples": '
        f'["{c}: 1 staged row(s), batch_ledger rows_valid 2"]}}',
        "  - crm_profiles_files: expect_column_values_to_be_null(column='status_problem') FAILED — "
        '{"unexpected_count": 2, "unexpected_percent": 33.33333333333333, "unexpected_samples": '
        f"[\"{d}: batch_ledger status 'staged', expected one of ingested, ok, unreadable, duplicate after ingest\", "
        f'"{e}: 1 staged and 0 quarantine row(s) but no batch_ledger row"]}}',
        "  - crm_profiles_ingested: expect_column_values_to_not_be_null(column='crm_id') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 12.5}',
        "  - crm_profiles_ingested: expect_column_values_to_be_null(column='missing') FAILED — "
        f'{{"unexpected_count": 1, "unexpected_percent": 12.5, "unexpected_sha256_12": ["{sha12("C2")}"]}}',
        "  - loyalty_members_volume: expect_column_values_to_be_null(column='empty_day_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 100.0, "unexpected_samples": ["1 file(s) landed, 0 valid '
        'rows"]}',
        "  - loyalty_members_volume: expect_column_values_to_be_null(column='shrink_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 100.0, "unexpected_samples": ["the table holds 2 row(s), 5 '
        'after the ingest of 2026-11-26"]}',
    ]


# ---------------------------------------------------------------- identities and profiles


def write_identity_map(spark: SparkSession, lake: str, rows: list[tuple[str, str, str]]) -> None:
    data = [(DAY, ns, value, i, profile, DAY, DAY, i) for i, (ns, value, profile) in enumerate(rows)]
    spark.createDataFrame(data, IDENTITY_MAP.schema).write.format("delta").mode("overwrite").save(
        Lake(lake).path(IDENTITY_MAP))


@ENGINES
def test_identity_in_two_profiles_fails_with_hashed_samples(spark: SparkSession, lake: str, ws: Workspace,
                                                            local_rows: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_GX_LOCAL_ROWS", local_rows)
    write_identity_map(spark, lake, [("email", "a@x.com", "p1"), ("email", "a@x.com", "p2"), ("crm_id", "C1", "p1")])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "identities")
    sample = sha12(json.dumps({"namespace": "email", "value": "a@x.com"}))
    assert failure_lines(caught)[1:] == [
        "  - identity_map: expect_compound_columns_to_be_unique(column_list=['namespace', 'value']) FAILED — "
        f'{{"unexpected_count": 2, "unexpected_percent": 66.66666666666666, "unexpected_sha256_12": ["{sample}"]}}']
    assert "a@x.com" not in str(caught.value)
    results = spark.read.format("delta").load(Lake(lake).path(QUALITY_RESULTS)).collect()
    assert sorted((r["suite"], r["expectation"], r["success"]) for r in results) == [
        ("identity_graphs", "expect_column_values_to_be_between", True),
        ("identity_graphs", "expect_column_values_to_be_between", True),
        ("identity_graphs", "expect_column_values_to_be_between", True),
        ("identity_map", "expect_compound_columns_to_be_unique", False),
        ("identity_map", "expect_table_row_count_to_be_between", True),
    ]
    assert not any("a@x.com" in (r["observed"] or "") for r in results)


def gx_index_rows(lake: str) -> list[tuple[str, str, str]]:
    """(run name, suite, status) of each row of the lake's GX Data Docs index (GX embeds them as its table's data)."""
    html = (Path(lake) / "quality_docs" / "index.html").read_text()
    return sorted(re.findall(r"'run_name': '([^']+)'.*?'_expectation_suite_name_sort': '([^']+)'.*?"
                             r"'_validation_success_text': '(\w+)'", html))


def test_the_gate_writes_gx_data_docs_that_a_re_run_replaces(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_identity_map(spark, lake, [("email", "a@x.com", "p1"), ("email", "a@x.com", "p2"), ("crm_id", "C1", "p1")])
    with pytest.raises(DataQualityError):
        check_quality.run(spark, ws, context(lake), "identities")
    assert gx_index_rows(lake) == [("2026-11-27_identities", "identity_graphs", "Success"),
                                   ("2026-11-27_identities", "identity_map", "Failed")]
    (failed,) = (Path(lake) / "quality_docs").glob("validations/identity_map/2026-11-27_identities/*/*.html")
    html = failed.read_text()
    shown = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", " ", html, flags=re.S)))
    sample = sha12(json.dumps({"namespace": "email", "value": "a@x.com"}))
    assert ("Values for given compound columns must be unique together: namespace , value 2 unexpected values found. "
            f"≈66.67% of 3 total rows. Unexpected Value Count sha256_12:{sample} 2") in shown
    assert "a@x.com" not in html

    # Fixed, and the gate run again for the same day: its pages are replaced, none added.
    write_identity_map(spark, lake, [("email", "a@x.com", "p1"), ("crm_id", "C1", "p1")])
    check_quality.run(spark, ws, context(lake), "identities")
    assert gx_index_rows(lake) == [("2026-11-27_identities", "identity_graphs", "Success"),
                                   ("2026-11-27_identities", "identity_map", "Success")]
    assert len(list((Path(lake) / "quality_docs").glob("validations/*/*/*/*.html"))) == 2


def test_empty_identity_map_fails(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_identity_map(spark, lake, [])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "identities")
    assert failure_lines(caught) == [
        "data-quality check 'identities' failed 1 of 5 expectations; the run stops here so that bad data does not "
        "flow on:",
        '  - identity_map: expect_table_row_count_to_be_between(min_value=1) FAILED — {"observed_value": 0}']


def test_clean_identity_map_passes(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_identity_map(spark, lake, [("email", "a@x.com", "p1"), ("crm_id", "C1", "p1")])
    outcomes = check_quality.run(spark, ws, context(lake), "identities")
    assert [o.success for o in outcomes] == [True] * 5


def test_collapsed_identity_graphs_fail(spark: SparkSession, lake: str, ws: Workspace) -> None:
    # p1 holds two CRM ids; p2 holds 51 cookies (cap 50).
    write_identity_map(spark, lake, [("crm_id", "C1", "p1"), ("crm_id", "C2", "p1")]
                       + [("ecid", f"K{i}", "p2") for i in range(51)])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "identities")
    assert failure_lines(caught)[0].startswith("data-quality check 'identities' failed 2 of 5 expectations")
    assert failure_lines(caught)[1:] == [
        "  - identity_graphs: expect_column_values_to_be_between(column='identities', max_value=50.0) FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 50.0, "unexpected_samples": [51]}',
        "  - identity_graphs: expect_column_values_to_be_between(column='unique_crm_id', max_value=1.0) FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 50.0, "unexpected_samples": [2]}',
    ]


def write_profiles(spark: SparkSession, lake: str, profile_ids: list[str]) -> None:
    spark.createDataFrame([(DAY, p) for p in profile_ids], "run_date date, profile_id string").write.format(
        "delta").save(f"{lake}/profiles")


def test_empty_profiles_while_identities_exist_fail(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_identity_map(spark, lake, [("crm_id", "C1", "p1"), ("crm_id", "C2", "p2")])
    write_profiles(spark, lake, [])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "profiles")
    assert failure_lines(caught)[1:] == [
        '  - profiles: expect_table_row_count_to_be_between(min_value=1) FAILED — {"observed_value": 0}',
        '  - profiles: expect_table_row_count_to_equal(value=2) FAILED — {"observed_value": 0}']


def test_profiles_that_do_not_match_the_identity_map_fail(spark: SparkSession, lake: str, ws: Workspace) -> None:
    # p1 twice, p3 unknown to the map, p2 missing: three rows for two profiles.
    write_identity_map(spark, lake, [("crm_id", "C1", "p1"), ("crm_id", "C2", "p2")])
    write_profiles(spark, lake, ["p1", "p1", "p3"])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "profiles")
    assert failure_lines(caught) == [
        "data-quality check 'profiles' failed 3 of 4 expectations; the run stops here so that bad data does not "
        "flow on:",
        '  - profiles: expect_table_row_count_to_equal(value=2) FAILED — {"observed_value": 3}',
        "  - profiles: expect_column_values_to_be_unique(column='profile_id') FAILED — "
        '{"unexpected_count": 2, "unexpected_percent": 66.66666666666666, '
        f'"unexpected_sha256_12": ["{sha12("p1")}"]}}',
        "  - profiles: expect_column_values_to_be_null(column='unmapped') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 33.33333333333333, '
        f'"unexpected_sha256_12": ["{sha12("p3")}"]}}',
    ]


def test_clean_profiles_pass(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_identity_map(spark, lake, [("crm_id", "C1", "p1"), ("crm_id", "C2", "p2")])
    write_profiles(spark, lake, ["p2", "p1"])
    assert [o.success for o in check_quality.run(spark, ws, context(lake), "profiles")] == [True] * 4


# ---------------------------------------------------------------- audiences

TS = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
EXIT_DAY = dt.date(2026, 11, 20)


def member(profile: str, status: str = "realized", reason: str | None = None, into: str | None = None,
           since: dt.date = DAY) -> tuple[Any, ...]:
    return (DAY, "gold_members", profile, status, TS, since, reason, into)


# Profiles of the run date: p1, p2; of the earlier exit day: p1, p8.
CLEAN_MEMBERSHIP = [
    member("p1"), member("p2", "existing", since=BEFORE),
    member("gone1", "exited", "profile_merged", "p1"),  # merged today into p1
    member("gone2", "exited", "profile_removed"),
    member("gone3", "exited", "profile_merged", "p8", since=EXIT_DAY),  # p8 merged on since: a chain
    (DAY, "french_high_points", "p2", "exited", TS, DAY, "not_qualified", None),
]
# One doctored row per way a membership can be wrong (p3 exists on no day).
DOCTORED_MEMBERSHIP = [
    member("p9"),  # a member whose profile is absent
    member("p10", "exited", "not_qualified"),  # absent, and the reason does not say why
    member("p11", "exited", "profile_merged", "p7"),  # merged into a profile that never existed
    (DAY, "cart_abandoners", "p1", "realized", TS, DAY, "not_qualified", None),  # an exit reason on a member
    (DAY, "cart_abandoners", "p2", "exited", TS, DAY, "bored", None),  # an unknown exit reason
    (DAY, "french_high_points", "p1", "exited", TS, DAY, "profile_merged", None),  # a merge without survivor
    (DAY, "engaged_readers", "p1", "exited", TS, DAY, "not_qualified", "p2"),  # a survivor without a merge
    (DAY, "engaged_readers", "p2", "pending", TS, DAY, None, None),  # an unknown status
    member("p1", "existing", since=BEFORE),  # (gold_members, p1) twice
]
def write_audience_lake(spark: SparkSession, lake: str, rows: list[tuple[Any, ...]]) -> None:
    spark.createDataFrame([(DAY, "p1"), (DAY, "p2"), (EXIT_DAY, "p1"), (EXIT_DAY, "p8")],
                          "run_date date, profile_id string").write.format("delta").save(f"{lake}/profiles")
    spark.createDataFrame(rows, AUDIENCE_MEMBERSHIP.schema).write.format("delta").save(
        Lake(lake).path(AUDIENCE_MEMBERSHIP))


def test_clean_memberships_pass(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_audience_lake(spark, lake, CLEAN_MEMBERSHIP)
    assert [(o.suite, o.success) for o in check_quality.run(spark, ws, context(lake), "audiences")] == [
        ("audience_membership", True), ("audience_membership", True), ("audience_membership", True),
        ("audience_membership_keys", True)]


def test_each_audience_gate_fails_on_its_doctored_rows(spark: SparkSession, lake: str, ws: Workspace) -> None:
    write_audience_lake(spark, lake, [*CLEAN_MEMBERSHIP, *DOCTORED_MEMBERSHIP])
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "audiences")
    share = 100 / 15
    assert failure_lines(caught) == [
        "data-quality check 'audiences' failed 4 of 4 expectations; the run stops here so that bad data does not "
        "flow on:",
        "  - audience_membership: expect_column_values_to_be_null(column='reference_problem') FAILED — "
        f'{{"unexpected_count": 3, "unexpected_percent": {3 * share}, "unexpected_samples": ['
        '"gold_members: exited membership merged into a profile absent on the run date and on its exit day '
        '2026-11-27", '
        '"gold_members: exited membership of a profile absent on the run date with exit_reason not_qualified '
        '(expected profile_merged or profile_removed)", '
        '"gold_members: realized membership of a profile absent on the run date"]}',
        "  - audience_membership: expect_column_values_to_be_null(column='exit_problem') FAILED — "
        f'{{"unexpected_count": 4, "unexpected_percent": {4 * share}, "unexpected_samples": ['
        '"cart_abandoners: exited membership with unknown exit_reason bored", '
        '"cart_abandoners: realized membership with exit_reason not_qualified (only exited rows have one)", '
        '"engaged_readers: exited membership with merged_into but exit_reason not_qualified", '
        '"french_high_points: exited membership profile_merged without merged_into"]}',
        "  - audience_membership: expect_column_values_to_be_in_set(column='status', value_set=['realized', "
        "'existing', 'exited']) FAILED — "
        f'{{"unexpected_count": 1, "unexpected_percent": {share}, "unexpected_samples": ["pending"]}}',
        "  - audience_membership_keys: expect_compound_columns_to_be_unique(column_list=['audience_id', "
        "'profile_id']) FAILED — "
        f'{{"unexpected_count": 2, "unexpected_percent": {2 * share}, "unexpected_sha256_12": '
        f'["{sha12(json.dumps({"audience_id": "gold_members", "profile_id": "p1"}))}"]}}',
    ]


def test_membership_table_without_exit_reason_is_checked_as_null(spark: SparkSession, lake: str,
                                                                 ws: Workspace) -> None:
    # Written before exit_reason existed: an exited row of an absent profile cannot say why, and fails.
    spark.createDataFrame([(DAY, "p1")], "run_date date, profile_id string").write.format("delta").save(
        f"{lake}/profiles")
    spark.createDataFrame([(DAY, "gold_members", "p1", "realized", TS, DAY),
                           (DAY, "gold_members", "p9", "exited", TS, DAY)],
                          "run_date date, audience_id string, profile_id string, status string, "
                          "last_qualification_time timestamp, status_since date").write.format("delta").save(
        Lake(lake).path(AUDIENCE_MEMBERSHIP))
    with pytest.raises(DataQualityError) as caught:
        check_quality.run(spark, ws, context(lake), "audiences")
    assert failure_lines(caught)[1:] == [
        "  - audience_membership: expect_column_values_to_be_null(column='reference_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 50.0, "unexpected_samples": ["gold_members: exited '
        'membership of a profile absent on the run date with exit_reason null (expected profile_merged or '
        'profile_removed)"]}']


def test_samples_never_hold_raw_values() -> None:
    from cdp.quality import observed_summary

    result = {"unexpected_count": 2, "unexpected_percent": 50.0, "observed_value": "ann@example.com",
              "partial_unexpected_list": ["ann@example.com", "+33612345678", "ann@example.com"]}
    assert observed_summary(result) == (
        f'{{"observed_value_sha256_12": "{sha12("ann@example.com")}", "unexpected_count": 2, '
        f'"unexpected_percent": 50.0, "unexpected_sha256_12": ["{sha12("+33612345678")}", '
        f'"{sha12("ann@example.com")}"]}}')

