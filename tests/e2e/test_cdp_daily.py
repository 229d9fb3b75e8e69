"""The whole daily run through a real Airflow scheduler over three consecutive days (tests/e2e/conftest.py).

Each day's landing holds the example generator's files (200 persons, seed 7) and hand-written persons
(tests/e2e/scenario.py):

- day 1 (2026-11-27): Ann (CRM + loyalty, one e-mail written two ways), Bob (CRM + cookie), Cat (CRM +
  e-mail opens), Dan (a bad CRM row), Eve (loyalty only); one CRM row and two web lines are bad;
- day 2: Eve's loyalty record now carries Cat's e-mail: Cat's and Eve's profiles merge, the retired id
  exits its audiences with exit_reason profile_merged and merged_into the survivor;
- day 3: a new CRM person, Fay (C006), uses Bob's e-mail: two CRM ids meet through one e-mail, collapse
  protection keeps the newer link, and Bob's e-mail splits off his profile.

The runs happen once for the session (the fixture ``daily_runs``): day 1 triggered through the REST API, a dry
run of day 2, a backfill of days 2-3, and day 2 backfilled again with reprocessing; every task a Spark Connect
client of one loopback server. The tests assert the exact export rows of the hand-written persons (generated
persons are told apart by their ids and e-mails), the merge and the split, the memberships of the retired id,
reconciled validate metrics; that the dry run delivered nothing and previewed what the real run then
delivered; that the backfill ran the days in order and the re-run delivered nothing twice; and that no e-mail
or phone number of the landed files appears in any task log (at DEBUG) or in the metrics, quality, ledger
and preview tables.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dashboard_browser import airflow_ui, browser, test_the_activation_view_shows_the_tables_figures
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scenario import DAYS, HAND_CRM_IDS, HAND_EMAILS, HEADER

from cdp.identities import e164

# The Activation view's browser test (dashboard_browser.py) runs in this module, on the same stack and DAG runs:
# `make test` keeps a module on one pytest-xdist worker, and the runs happen once per worker.
__all__ = ["airflow_ui", "browser", "test_the_activation_view_shows_the_tables_figures"]

# Five DAG runs of 15 tasks each: on a busy machine more than the suite's default 30-minute timeout.
pytestmark = pytest.mark.timeout(7200)


def test_every_day_succeeded_in_order_without_retries(daily_runs: dict[str, Any]) -> None:
    runs = daily_runs["runs"]
    day1 = runs["day1"]
    assert (day1["run_type"], day1["run_date"], day1["state"]) == ("manual", DAYS[0], "success"), day1["failure"]
    backfill = daily_runs.get("backfill", [])
    # The backfill made days 2 and 3 one after the other, oldest first (max_active_runs 1), each a success.
    assert [(r["run_type"], r["run_date"], r["state"]) for r in backfill] == [
        ("backfill", DAYS[1], "success"), ("backfill", DAYS[2], "success")], [r["failure"] for r in backfill]
    assert backfill[0]["end_date"] <= backfill[1]["start_date"]
    for run in [day1, *backfill]:
        bad = {task: state for task, state in run["tasks"].items() if state != "success"}
        assert bad == {}, (run["run_id"], bad)


def read_export(daily_runs: dict[str, Any], audience_id: str, day: str) -> tuple[str, list[str]]:
    """The header and the hand-written persons' rows (sorted) of one audience's file of one day."""
    path = daily_runs["exports"] / "marketing" / f"marketing_landing_{audience_id}_{day.replace('-', '')}.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines[1:] if line.split(",")[0] in HAND_CRM_IDS
            or (line.split(",")[0] == "" and line.split(",")[1].lower() in HAND_EMAILS)]
    return lines[0], sorted(rows)


def identity_profiles(spark: SparkSession, lake: Path, day: str) -> dict[tuple[str, str], str]:
    """(namespace, value) -> profile id of the hand-written persons' person ids on a run date."""
    rows = spark.read.format("delta").load(str(lake / "identity_map")).where(
        (F.col("run_date") == F.lit(day)) & F.col("value").isin("C001", "C002", "C003", "C006", "L001", "L002"))
    return {(r["namespace"], r["value"]): r["profile_id"] for r in rows.collect()}


def test_day_1_files(daily_runs: dict[str, Any]) -> None:
    # Ann's CRM and loyalty records merge through her email written two ways; Eve is loyalty-only.
    assert read_export(daily_runs, "gold_members", DAYS[0]) == (HEADER, [
        ",eve@example.com,,platinum,,realized,2026-11-28T00:00:00Z",
        "C001,Ann@Example.com,Ann,gold,FR,realized,2026-11-28T00:00:00Z",
    ])
    # Bob's cookie added to cart while logged in and never bought; Ann bought.
    assert read_export(daily_runs, "cart_abandoners", DAYS[0]) == (HEADER, [
        "C002,bob@example.com,Bob,,US,realized,2026-11-28T00:00:00Z"])
    # Country and consent come from the CRM, points from the loyalty programme: one merged profile.
    assert read_export(daily_runs, "french_high_points", DAYS[0]) == (HEADER, [
        "C001,Ann@Example.com,Ann,gold,FR,realized,2026-11-28T00:00:00Z"])


def test_day_2_merge_of_cat_and_eve(daily_runs: dict[str, Any], spark: SparkSession) -> None:
    lake = daily_runs["lake"]
    before = identity_profiles(spark, lake, DAYS[0])
    cat, eve = before[("crm_id", "C003")], before[("loyalty_id", "L002")]
    assert cat != eve
    # Both ids were first seen on day 1: the smaller one survives.
    survivor, retired = min(cat, eve), max(cat, eve)
    after = identity_profiles(spark, lake, DAYS[1])
    assert after[("crm_id", "C003")] == after[("loyalty_id", "L002")] == survivor
    changes = spark.read.format("delta").load(str(lake / "profile_id_changes")).where(
        (F.col("run_date") == F.lit(DAYS[1])) & F.col("previous_profile_id").isin(cat, eve))
    assert [(r["change"], r["profile_id"], r["previous_profile_id"]) for r in changes.collect()] == [
        ("merge", survivor, retired)]

    # The merged profile holds Cat's CRM attributes and Eve's loyalty ones: gold and French with points.
    gold_status = "existing" if survivor == eve else "realized"
    assert read_export(daily_runs, "gold_members", DAYS[1]) == (HEADER, [
        "C001,Ann@Example.com,Ann,gold,FR,existing,2026-11-29T00:00:00Z",
        f"C003,Cat@Example.com,Cat,platinum,FR,{gold_status},2026-11-29T00:00:00Z",
    ])
    assert read_export(daily_runs, "french_high_points", DAYS[1]) == (HEADER, [
        "C001,Ann@Example.com,Ann,gold,FR,existing,2026-11-29T00:00:00Z",
        "C003,Cat@Example.com,Cat,platinum,FR,realized,2026-11-29T00:00:00Z",
    ])
    assert read_export(daily_runs, "cart_abandoners", DAYS[1]) == (HEADER, [
        "C002,bob@example.com,Bob,,US,existing,2026-11-29T00:00:00Z"])

    # The retired id exits every audience it was a member of, saying into which profile it merged,
    # and its exit is kept (as it was) on day 3.
    membership = spark.read.format("delta").load(str(lake / "audience_membership"))
    was_member = sorted(r["audience_id"] for r in membership.where(
        (F.col("run_date") == F.lit(DAYS[0])) & (F.col("profile_id") == retired)).collect())
    assert was_member == (["gold_members"] if retired == eve else ["engaged_readers"])
    for day in DAYS[1:]:
        rows = membership.where((F.col("run_date") == F.lit(day)) & (F.col("profile_id") == retired))
        assert sorted((r["audience_id"], r["status"], str(r["status_since"]), r["exit_reason"], r["merged_into"])
                      for r in rows.collect()) == [
            (audience, "exited", DAYS[1], "profile_merged", survivor) for audience in was_member]


def test_day_3_split_by_collapse_protection(daily_runs: dict[str, Any], spark: SparkSession) -> None:
    lake = daily_runs["lake"]
    day2, day3 = identity_profiles(spark, lake, DAYS[1]), identity_profiles(spark, lake, DAYS[2])
    bob, fay = day3[("crm_id", "C002")], day3[("crm_id", "C006")]
    assert bob == day2[("crm_id", "C002")] != fay  # Bob keeps his id: his part holds his oldest identity
    email = spark.read.format("delta").load(str(lake / "identity_map")).where(
        (F.col("run_date") == F.lit(DAYS[2])) & (F.col("namespace") == "email") & (F.col("value") == "bob@example.com"))
    assert [r["profile_id"] for r in email.collect()] == [fay]  # the newer link won
    changes = spark.read.format("delta").load(str(lake / "profile_id_changes")).where(
        (F.col("run_date") == F.lit(DAYS[2])) & (F.col("previous_profile_id") == bob))
    assert [(r["change"], r["profile_id"]) for r in changes.collect()] == [("split", fay)]
    audit = spark.read.format("delta").load(str(lake / "identity_audit")).where(
        (F.col("run_date") == F.lit(DAYS[2])) & (F.col("reason") == "unique_namespace")
        & F.col("value").isin("C002", "bob@example.com"))
    # The dropped link, whichever end the audit names first.
    assert [sorted([(r["namespace"], r["value"]), (r["other_namespace"], r["other_value"])])
            for r in audit.collect()] == [[("crm_id", "C002"), ("email", "bob@example.com")]]

    assert read_export(daily_runs, "cart_abandoners", DAYS[2]) == (HEADER, [
        "C002,bob@example.com,Bob,,US,existing,2026-11-30T00:00:00Z"])
    assert read_export(daily_runs, "gold_members", DAYS[2]) == (HEADER, [
        "C001,Ann@Example.com,Ann,gold,FR,existing,2026-11-30T00:00:00Z",
        "C003,Cat@Example.com,Cat,platinum,FR,existing,2026-11-30T00:00:00Z",
    ])
    assert read_export(daily_runs, "french_high_points", DAYS[2]) == (HEADER, [
        "C001,Ann@Example.com,Ann,gold,FR,existing,2026-11-30T00:00:00Z",
        "C003,Cat@Example.com,Cat,platinum,FR,existing,2026-11-30T00:00:00Z",
    ])


def test_bad_records_quarantined_with_reasons(daily_runs: dict[str, Any], spark: SparkSession) -> None:
    rows = spark.read.format("delta").load(str(daily_runs["lake"] / "quarantine")).collect()
    found = sorted((str(r["batch_date"]), r["dataset"], Path(r["source_file"]).name, r["row_number"],
                    sorted(x["code"] for x in r["reasons"])) for r in rows
                   if Path(r["source_file"]).name in ("crm.csv", "web.jsonl", "email.jsonl", "loyalty.parquet"))
    assert found == [
        (DAYS[0], "crm_profiles", "crm.csv", 5, ["bad_format"]),
        (DAYS[0], "web_events", "web.jsonl", 4, ["not_in_enum"]),
        (DAYS[0], "web_events", "web.jsonl", 5, ["malformed_record"]),
    ]


def test_validate_metrics_reconcile(daily_runs: dict[str, Any], spark: SparkSession) -> None:
    metrics = spark.read.format("delta").load(str(daily_runs["lake"] / "run_metrics")).where(
        F.col("step") == "validate").collect()
    by_slice: dict[tuple[str, str], dict[str, int]] = {}
    for r in metrics:
        by_slice.setdefault((str(r["run_date"]), r["scope"]), {})[r["metric"]] = r["value"]
    datasets = ["crm_profiles", "email_events", "loyalty_members", "web_events"]
    assert sorted(by_slice) == [(day, d) for day in DAYS for d in datasets]
    for (day, dataset), m in sorted(by_slice.items()):
        assert m["rows_read"] == m["rows_valid"] + m["rows_quarantined"], (day, dataset, m)
        assert m["rows_valid"] > 0, (day, dataset, m)


def landed_contacts(landing: Path) -> set[str]:
    """Every e-mail and phone number of the landed files, raw and normalised (lower-cased, E.164)."""
    emails: set[str] = set()
    phones: set[str] = set()
    for path in landing.rglob("*"):
        if path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    emails.add(row.get("email") or "")
                    phones.add(row.get("phone") or "")
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    emails.add(str(record.get("email") or ""))
                    phones.add(str(record.get("phone") or ""))
        elif path.suffix == ".parquet":
            emails.update(str(v or "") for v in pq.read_table(path).column("email").to_pylist())
    found = {e.strip() for e in emails if "@" in e} | {e.strip().lower() for e in emails if "@" in e}
    for phone in phones:
        if sum(c.isdigit() for c in phone) >= 6:
            found.add(phone.strip())
            normalised, _ = e164(phone, "FR")
            if normalised:
                found.add(normalised)
    return found


def task_logs(airflow_home: Path, run_id: str | None = None, task_id: str | None = None) -> dict[Path, str]:
    """The task log files under AIRFLOW_HOME/logs (of one run, of one task), path -> text."""
    found = {}
    for path in sorted((airflow_home / "logs").rglob("*")):
        if not path.is_file():
            continue
        if run_id is not None and f"run_id={run_id}" not in path.parts:
            continue
        if task_id is not None and f"task_id={task_id}" not in path.parts:
            continue
        found[path] = path.read_text(encoding="utf-8", errors="replace")
    return found


def rows_of(spark: SparkSession, lake: Path, table: str, run_date: str) -> list[dict[str, Any]]:
    return [r.asDict(recursive=True) for r in spark.read.format("delta").load(str(lake / table)).where(
        F.col("run_date") == F.lit(run_date)).orderBy("destination").collect()]


COUNTS = ("type", "mode", "base_run_date", "received", "activated", "excluded", "failed", "files", "rows", "bytes")


def test_dry_run_delivered_nothing_and_previewed_what_day_2_then_delivered(daily_runs: dict[str, Any],
                                                                          spark: SparkSession) -> None:
    dry = daily_runs["runs"]["dry_run"]
    assert (dry["run_date"], dry["conf"].get("dry_run"), dry["state"]) == (DAYS[1], True, "success"), dry["failure"]
    # Nothing delivered: the exports folder and every ledger and metrics row as they were before the dry run.
    before, after = daily_runs["dry_run"]["before"], daily_runs["dry_run"]["after"]
    assert after == before
    assert not [name for name in after["files"] if DAYS[1].replace("-", "") in name]
    # The preview holds what the real run of day 2 (the backfill, after it) then delivered: the same counts,
    # the same files byte for byte.
    lake, exports = daily_runs["lake"], daily_runs["exports"]
    previews = rows_of(spark, lake, "export_previews", DAYS[1])
    delivered = rows_of(spark, lake, "destination_metrics", DAYS[1])
    assert [p["destination"] for p in previews] == [d["destination"] for d in delivered] == ["marketing_landing"]
    preview, metrics = previews[0], delivered[0]
    assert preview["run_id"] == dry["run_id"]
    assert {k: preview[k] for k in COUNTS} == {k: metrics[k] for k in COUNTS}
    assert (preview["messages"], preview["already_delivered"]) == (0, 0)
    ledger = {r["file_name"]: r for r in rows_of(spark, lake, "export_ledger", DAYS[1])}
    assert sorted(f["file_name"] for f in preview["file_list"]) == sorted(ledger)
    for f in preview["file_list"]:
        assert (f["rows"], f["bytes"], f["sha256"]) == (ledger[f["file_name"]]["rows"], ledger[f["file_name"]]["bytes"],
                                                        ledger[f["file_name"]]["sha256"])
        assert (Path(preview["location"]) / f["file_name"]).read_bytes() == (
            exports / "marketing" / f["file_name"]).read_bytes()
    # The dry run's gate checked the previews, under a stage of their own; its report said what it found.
    gate = spark.read.format("delta").load(str(lake / "quality_results")).where(
        (F.col("run_date") == F.lit(DAYS[1])) & (F.col("stage") == "export_previews")).collect()
    assert gate and all(r["success"] for r in gate)
    report = "\n".join(task_logs(daily_runs["airflow_home"], dry["run_id"], "report").values())
    assert "dry run (nothing delivered): what each destination would receive" in report
    assert f"preview: {preview['location']}" in report


def delivered_projection(rows: list[str]) -> set[tuple[Any, ...]]:
    """What was delivered where, from export_ledger rows (JSON lines): not when or by which run."""
    return {(r["destination"], r["run_date"], r["file_name"], r["kind"], r["rows"], r["bytes"], r["sha256"],
             r["status"], r["location"]) for r in map(json.loads, rows)}


def test_backfill_again_with_reprocessing_delivers_nothing_twice(daily_runs: dict[str, Any]) -> None:
    rerun = daily_runs.get("rerun", [])
    assert [(r["run_type"], r["run_date"], r["state"]) for r in rerun] == [("backfill", DAYS[1], "success")], [
        r["failure"] for r in rerun]
    before, after = daily_runs["rerun_deliveries"]["before"], daily_runs["rerun_deliveries"]["after"]
    # Every delivered file as it was, not even rewritten (same bytes, same modification time).
    assert after["files"] == before["files"]
    assert delivered_projection(after["ledgers"]["export_ledger"]) == delivered_projection(
        before["ledgers"]["export_ledger"])
    logs = "\n".join(task_logs(daily_runs["airflow_home"], rerun[0]["run_id"], "export").values())
    assert "already delivered (sha256" in logs and "not sent again" in logs


def test_no_email_or_phone_in_logs_metrics_tables_or_data_docs(daily_runs: dict[str, Any], spark: SparkSession) -> None:
    contacts = landed_contacts(daily_runs["landing"])
    assert {"Ann@Example.com", "ann@example.com", "+33 6 12 34 56 78", "+33612345678"} <= contacts
    home = daily_runs["airflow_home"]
    logs = task_logs(home)
    every_log = "\n".join(logs.values())
    # The tasks logged at DEBUG, and the jobs' own lines are in their task logs.
    for day in DAYS:
        assert f"dataset crm_profiles, {day}: " in every_log, f"no validate log line for {day} in {home / 'logs'}"
    assert " DEBUG " in every_log
    texts: dict[str, str] = {str(p): text for p, text in logs.items()}
    texts.update({str(p): p.read_text(encoding="utf-8", errors="replace")
                  for p in sorted((home / "processes").glob("*.log"))})
    for table in ("run_metrics", "quality_results", "batch_ledger", "export_ledger", "destination_metrics",
                  "export_previews", "step_runs", "quarantine_summary", "audience_sizes", "identity_summary"):
        rows = spark.read.format("delta").load(str(daily_runs["lake"] / table)).collect()
        texts[f"table {table}"] = "\n".join(" | ".join(str(v) for v in r) for r in rows)
    # The quality gates' GX Data Docs (pages, and the results they are built from) hold hashed samples only.
    docs = sorted(p for p in (daily_runs["lake"] / "quality_docs").rglob("*")
                  if p.is_file() and p.suffix in (".html", ".json"))
    assert any(p.name == "index.html" for p in docs), "the gates wrote no Data Docs"
    texts.update({str(p): p.read_text(encoding="utf-8", errors="replace") for p in docs})
    # E-mails compared case-insensitively (a log could upper-case one); phones as written and in E.164.
    lowered = {where: text.lower() for where, text in texts.items()}
    leaks = sorted((where, contact) for where, text in texts.items() for contact in contacts
                   if contact in text or ("@" in contact and contact.lower() in lowered[where]))
    assert leaks == [], f"{len(leaks)} e-mail / phone occurrence(s), first ones: {leaks[:20]}"
