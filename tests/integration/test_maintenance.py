"""jobs/maintenance.py on a small lake: exactly the rows and landed folders past their retention go, the rest
stays; small files are compacted, and VACUUM keeps files younger than the 7-day retention."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cdp_provider.operators.spark_job import CdpSparkJobOperator
from pyspark.sql import SparkSession

from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.spark_connect import ServerState
from cdp.workspace.loader import load_workspace
from jobs import maintenance

RUN_DATE = dt.date(2026, 11, 27)
D = dt.date.fromisoformat


def append(spark: SparkSession, path: Path, ddl: str, rows: list[tuple[object, ...]]) -> None:
    """One append per row: one data file each, for OPTIMIZE to compact."""
    for row in rows:
        spark.createDataFrame([row], ddl).coalesce(1).write.format("delta").mode("append").save(str(path))


def parquet_files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*.parquet")}


@pytest.mark.integration
def test_maintenance_removes_exactly_what_is_past_its_retention(spark: SparkSession, tmp_path: Path,
                                                                 repo_root: Path) -> None:
    lake, landing = tmp_path / "lake", tmp_path / "landing"
    # Defaults for 2026-11-27: quarantine 90 days (cutoff 2026-08-29), metrics and ledgers 400 days (cutoff
    # 2025-10-23), exited memberships 30 days (cutoff 2026-10-28), landed folders 30 days (cutoff 2026-10-28).
    append(spark, lake / "quarantine", "dataset string, batch_date date, row_number int",
           [("crm_profiles", D("2026-08-28"), 1), ("crm_profiles", D("2026-08-29"), 2),
            ("web_events", D("2026-11-27"), 3)])
    append(spark, lake / "run_metrics", "run_date date, step string, scope string, metric string, value long",
           [(D("2025-10-22"), "validate", "crm_profiles", "rows_read", 10),
            (D("2025-10-23"), "validate", "crm_profiles", "rows_read", 11)])
    append(spark, lake / "batch_ledger", "dataset string, batch_date date, file string",
           [("crm_profiles", D("2025-01-05"), "old.csv"), ("crm_profiles", D("2026-11-26"), "new.csv")])
    append(spark, lake / "audience_membership",
           "run_date date, audience_id string, profile_id string, status string, status_since date",
           [(D("2026-11-27"), "gold_members", "P1", "exited", D("2026-10-27")),
            (D("2026-11-27"), "gold_members", "P2", "exited", D("2026-10-28")),
            (D("2026-11-27"), "gold_members", "P3", "existing", D("2026-01-01")),
            (D("2026-10-27"), "gold_members", "P1", "exited", D("2026-10-27"))])
    for folder in ("crm/2026-10-27", "crm/2026-10-28", "crm/notes", "web/2026-01-01", "web/2026-11-27"):
        (landing / folder).mkdir(parents=True)
        (landing / folder / "part.csv").write_text("x\n", encoding="utf-8")
    quarantine_files = parquet_files(lake / "quarantine")
    assert len(quarantine_files) == 3

    settings = Settings(workspace=str(repo_root / "examples" / "retail"), lake=str(lake), landing=str(landing),
                        exports=str(tmp_path / "exports"))
    metrics = maintenance.run(spark, load_workspace(settings.workspace, settings),
                              RunContext(RUN_DATE, "maintenance__1", settings))

    assert metrics == {"deleted.quarantine": 1, "deleted.run_metrics": 1, "deleted.batch_ledger": 1,
                       "deleted.audience_membership": 2, "landing_folders_removed": 2, "tables_maintained": 4}
    read = spark.read.format("delta").load
    assert sorted((r["dataset"], r["row_number"]) for r in read(str(lake / "quarantine")).collect()) == [
        ("crm_profiles", 2), ("web_events", 3)]
    assert [r["value"] for r in read(str(lake / "run_metrics")).collect()] == [11]
    assert [r["file"] for r in read(str(lake / "batch_ledger")).collect()] == ["new.csv"]
    assert sorted((str(r["run_date"]), r["profile_id"], r["status"])
                  for r in read(str(lake / "audience_membership")).collect()) == [
        ("2026-11-27", "P2", "exited"), ("2026-11-27", "P3", "existing")]
    assert sorted(str(p.relative_to(landing)) for p in landing.rglob("part.csv")) == [
        "crm/2026-10-28/part.csv", "crm/notes/part.csv", "web/2026-11-27/part.csv"]

    # OPTIMIZE compacted the quarantine's remaining rows into one file; VACUUM kept the replaced files, which
    # are younger than the 168-hour retention (time travel to them still works).
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{lake / 'quarantine'}`").first()
    assert detail is not None and detail["numFiles"] == 1
    assert quarantine_files < parquet_files(lake / "quarantine")
    assert spark.read.format("delta").option("versionAsOf", 2).load(str(lake / "quarantine")).count() == 3

    # The same run date again removes nothing more.
    again = maintenance.run(spark, load_workspace(settings.workspace, settings),
                            RunContext(RUN_DATE, "maintenance__2", settings))
    assert {k: v for k, v in again.items() if k != "tables_maintained"} == {
        "deleted.quarantine": 0, "deleted.run_metrics": 0, "deleted.batch_ledger": 0,
        "deleted.audience_membership": 0, "landing_folders_removed": 0}
    assert os.path.isdir(landing / "crm" / "notes")


def test_vacuum_retention_below_seven_days_is_refused(tmp_path: Path, repo_root: Path) -> None:
    import shutil

    from cdp.errors import WorkspaceError

    workspace = tmp_path / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    with (workspace / "workspace.yaml").open("a", encoding="utf-8") as out:
        out.write("maintenance:\n  vacuum_retention_hours: 24\n")
    with pytest.raises(WorkspaceError) as failed:
        load_workspace(str(workspace))
    assert [str(p) for p in failed.value.problems] == [
        "workspace.yaml: maintenance.vacuum_retention_hours: Input should be greater than or equal to 168"]


@pytest.mark.integration
def test_the_dag_runs_maintenance_as_a_spark_connect_client(spark: SparkSession, tmp_path: Path, repo_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            spark_connect_server: ServerState) -> None:
    """The way cdp_maintenance runs it: the operator, the job as a client of the loopback Connect server."""
    lake = tmp_path / "lake"
    append(spark, lake / "quarantine", "dataset string, batch_date date, row_number int",
           [("crm_profiles", D("2026-01-02"), 1), ("crm_profiles", D("2026-11-20"), 2)])
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(
        {"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": spark_connect_server.port}))
    for name, value in (("CDP_WORKSPACE", str(repo_root / "examples" / "retail")), ("CDP_LAKE", str(lake)),
                        ("CDP_LANDING", str(tmp_path / "landing")), ("CDP_EXPORTS", str(tmp_path / "exports"))):
        monkeypatch.setenv(name, value)
    CdpSparkJobOperator(task_id="maintenance", job="maintenance", run_date="2026-11-27").execute(
        {"run_id": "scheduled__2026-11-27T03:00:00+00:00"})

    assert [r["row_number"] for r in spark.read.format("delta").load(str(lake / "quarantine")).collect()] == [2]
    metrics = spark.read.format("delta").load(str(lake / "run_metrics")).where("step = 'maintenance'")
    assert sorted((r["metric"], r["value"]) for r in metrics.collect()) == [
        ("deleted.quarantine", 1), ("landing_folders_removed", 0), ("tables_maintained", 1)]
