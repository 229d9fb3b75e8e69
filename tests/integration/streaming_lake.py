"""A small lake and workspace for the streaming-destination tests: profiles and gold_members memberships per
day, the example workspace with streaming destinations added, and the JSON Schema every payload must meet."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from cdp.job import COMMITTED, StepKey, mark_step
from cdp.lake import AUDIENCE_MEMBERSHIP, PROFILES, Lake
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "schemas" / "profile_change.schema.json").read_text())
PROFILE_SCHEMA = T.StructType([
    T.StructField("run_date", T.DateType()), T.StructField("profile_id", T.StringType()),
    T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
    T.StructField("first_name", T.StringType()), T.StructField("tier", T.StringType()),
    T.StructField("points", T.LongType()),
])
MEMBERSHIP = ("run_date date, audience_id string, profile_id string, status string, "
              "last_qualification_time timestamp, status_since date")
Person = tuple[str | None, str | None, str | None, int | None]  # crm id, e-mail, first name, points (tier is gold)


def qualified(day: dt.date) -> dt.datetime:
    """The qualification time a day's evaluation stamps: the end of the day (UTC)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def write_day(spark: SparkSession, lake: Lake, day: dt.date, people: dict[str, Person],
              members: dict[str, tuple[str, dt.date]]) -> None:
    """One day's profiles and gold_members memberships (profile -> status, day it qualified first)."""
    rows = [(day, pid, {k: v for k, v in (("crm_id", [crm] if crm else []),
                                                          ("email", [mail] if mail else [])) if v}, name, "gold",
             points) for pid, (crm, mail, name, points) in people.items()]
    spark.createDataFrame(rows, PROFILE_SCHEMA).write.format("delta").mode("append").partitionBy("run_date").option(
        "mergeSchema", "true").save(lake.path(PROFILES))
    membership = [(day, "gold_members", pid, status, qualified(since if status == "exited" else day), since)
                  for pid, (status, since) in members.items()]
    spark.createDataFrame(membership, MEMBERSHIP).write.format("delta").mode("append").partitionBy("run_date").save(
        lake.path(AUDIENCE_MEMBERSHIP))
    mark_step(lake, day, StepKey("evaluate_audiences"), COMMITTED, f"eval_{day}")


def workspace_with(tmp_path: Path, destinations: dict[str, str]) -> tuple[Path, Workspace, Settings]:
    """The example workspace with only the given destination files (name -> YAML), loaded and checked."""
    root = tmp_path / "ws"
    shutil.copytree(REPO / "examples" / "retail", root)
    for f in (root / "destinations").iterdir():
        f.unlink()
    for name, text in destinations.items():
        (root / "destinations" / f"{name}.yaml").write_text(text)
    settings = Settings(workspace=str(root), lake=str(tmp_path / "lake"), landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))
    return root, load_workspace(root, settings), settings


def context(settings: Settings, day: dt.date, run_id: str | None = None) -> RunContext:
    return RunContext(day, run_id or f"scheduled__{day}", settings)


def valid(message: dict[str, Any]) -> dict[str, Any]:
    """The message, once checked against docs/schemas/profile_change.schema.json."""
    jsonschema.validate(message, SCHEMA, format_checker=jsonschema.FormatChecker())
    return message
