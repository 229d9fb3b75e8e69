"""An incremental export over three days: the first file is full, the next ones hold only who entered, left or
changed, with a status column saying which; a full resync sends everyone again and is recorded."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from cdp.lake import AUDIENCE_MEMBERSHIP, DESTINATION_METRICS, EXPORT_LEDGER, PROFILES
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from cdp.workspace.models import LocalDestination
from jobs import export

DAYS = [dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)]
PROFILE_SCHEMA = T.StructType([
    T.StructField("run_date", T.DateType()), T.StructField("profile_id", T.StringType()),
    T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
    T.StructField("first_name", T.StringType()), T.StructField("tier", T.StringType()),
])


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def write_day(spark: SparkSession, lake: Any, day: dt.date, people: dict[str, tuple[str, str, str]],
              members: dict[str, tuple[str, dt.date]]) -> None:
    """One day's profiles (id -> crm id, first name, tier) and gold_members memberships (id -> status, since)."""
    profiles = [(day, pid, {"crm_id": [crm]}, name, tier) for pid, (crm, name, tier) in people.items()]
    spark.createDataFrame(profiles, PROFILE_SCHEMA).write.format("delta").mode("append").partitionBy(
        "run_date").option("mergeSchema", "true").save(lake.path(PROFILES))
    # Members qualified at today's evaluation; an exit keeps the last qualification (the day before it).
    rows = [(day, "gold_members", pid, status, at(day if status != "exited" else since - dt.timedelta(days=1)),
             since) for pid, (status, since) in members.items()]
    assert AUDIENCE_MEMBERSHIP.schema is not None
    spark.createDataFrame(rows, "run_date date, audience_id string, profile_id string, status string, "
                                "last_qualification_time timestamp, status_since date").write.format("delta").mode(
        "append").partitionBy("run_date").save(lake.path(AUDIENCE_MEMBERSHIP))


@pytest.fixture()
def workspace(repo_root: Path) -> Workspace:
    ws = load_workspace(repo_root / "examples" / "retail")
    dest = LocalDestination.model_validate({
        "name": "crm_sync", "type": "local", "path": "crm", "audiences": ["gold_members"], "export": "incremental",
        "file_name": "{destination}_{audience_id}_{date}",
        "mapping": [{"source": "identity:crm_id", "name": "crm_id"}, {"source": "first_name"}, {"source": "tier"}]})
    return dataclasses.replace(ws, destinations={"crm_sync": dest})


def exported(tmp_path: Path, day: dt.date) -> list[str]:
    return (tmp_path / "exports" / "crm" / f"crm_sync_gold_members_{day:%Y%m%d}.csv").read_text().splitlines()


def test_three_days_of_changes_then_a_full_resync(spark: SparkSession, workspace: Workspace, lake: str,
                                                 tmp_path: Path) -> None:
    def ctx(day: dt.date, run_id: str = "r") -> RunContext:
        return RunContext(day, f"{run_id}-{day}", Settings(workspace="unused", lake=lake,
                                                            landing=str(tmp_path / "landing"),
                                                            exports=str(tmp_path / "exports")))

    d1, d2, d3 = DAYS
    ann, bob, cat = ("C1", "Ann", "gold"), ("C2", "Bob", "gold"), ("C3", "Cat", "platinum")
    dan = ("C4", "Dan", "gold")
    write_day(spark, ctx(d1).lake, d1, {"p1": ann, "p2": bob, "p3": cat},
              {"p1": ("realized", d1), "p2": ("realized", d1), "p3": ("realized", d1)})
    # Day 2: Bob left (his profile merged into Ann's: no profile of his own today); Cat's first name changed.
    write_day(spark, ctx(d1).lake, d2, {"p1": ann, "p3": ("C3", "Catherine", "platinum")},
              {"p1": ("existing", d1), "p2": ("exited", d2), "p3": ("existing", d1)})
    # Day 3: Dan entered; nothing else changed (Bob's exit is kept for the retention, not sent again).
    write_day(spark, ctx(d1).lake, d3, {"p1": ann, "p3": ("C3", "Catherine", "platinum"), "p4": dan},
              {"p1": ("existing", d1), "p2": ("exited", d2), "p3": ("existing", d1), "p4": ("realized", d3)})

    header = "crm_id,first_name,tier,membership_status,last_qualification_time"
    metrics = [export.run(spark, workspace, ctx(day), "crm_sync") for day in DAYS]
    assert exported(tmp_path, d1) == [header, "C1,Ann,gold,realized,2026-11-26T00:00:00Z",
                                      "C2,Bob,gold,realized,2026-11-26T00:00:00Z",
                                      "C3,Cat,platinum,realized,2026-11-26T00:00:00Z"]
    # Bob exits with the values he was sent with, at his last qualification.
    assert exported(tmp_path, d2) == [header, "C2,Bob,gold,exited,2026-11-26T00:00:00Z",
                                      "C3,Catherine,platinum,existing,2026-11-27T00:00:00Z"]
    assert exported(tmp_path, d3) == [header, "C4,Dan,gold,realized,2026-11-28T00:00:00Z"]
    assert [(m["received"], m["activated"]) for m in metrics] == [(3, 3), (2, 2), (1, 1)]
    modes = sorted((r["run_date"], r["mode"], r["base_run_date"]) for r in
                   spark.read.format("delta").load(ctx(d1).lake.path(DESTINATION_METRICS)).collect())
    assert modes == [(d1, "full", None), (d2, "incremental", d1), (d3, "incremental", d2)]

    # Re-running day 2 (a backfill) gives the same file: the base is still the last day delivered before it.
    before = exported(tmp_path, d2)
    export.run(spark, workspace, ctx(d2, "again"), "crm_sync")
    assert exported(tmp_path, d2) == before

    # A full resync of day 3 sends every current member and is recorded.
    export.run(spark, workspace, ctx(d3, "resync"), "crm_sync", full_resync=True)
    assert exported(tmp_path, d3) == [header, "C1,Ann,gold,existing,2026-11-28T00:00:00Z",
                                      "C3,Catherine,platinum,existing,2026-11-28T00:00:00Z",
                                      "C4,Dan,gold,realized,2026-11-28T00:00:00Z"]
    ledger = {(r["run_date"], r["mode"]) for r in
              spark.read.format("delta").load(ctx(d1).lake.path(EXPORT_LEDGER)).collect()}
    assert ledger == {(d1, "full"), (d2, "incremental"), (d3, "resync")}
