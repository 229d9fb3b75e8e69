"""Schema evolution end to end: an optional field added between two days, and a breaking change refused."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.lake import BATCH_LEDGER, DATASET, STAGING, Lake
from cdp.run_context import RunContext
from cdp.schema_evolution import SchemaEvolutionError
from cdp.settings import Settings
from cdp.workspace.loader import load_workspace
from jobs import ingest, validate

DAY4, DAY5, DAY6 = dt.date(2024, 1, 4), dt.date(2024, 1, 5), dt.date(2024, 1, 6)
E1 = "1" * 38


def hit(event_id: str, day: dt.date, **extra: object) -> str:
    return json.dumps({"event_id": event_id, "event_type": "page_view", "timestamp": f"{day.isoformat()}T10:00:00Z",
                       "ecid": E1, **extra})


def test_added_optional_field_then_a_breaking_change(spark: SparkSession, repo_root: Path, lake: str,
                                                     tmp_path: Path) -> None:
    ws_root = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", ws_root)
    schema_file = ws_root / "schemas" / "web_event.yaml"
    settings = Settings(workspace=str(ws_root), lake=lake, landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))

    def land(day: dt.date, lines: list[str]) -> None:
        folder = tmp_path / "landing" / "web" / day.isoformat()
        folder.mkdir(parents=True)
        (folder / "hits.jsonl").write_text("\n".join(lines) + "\n")

    def run_day(day: dt.date) -> dict[str, int]:
        ws = load_workspace(ws_root)
        ctx = RunContext(run_date=day, run_id=f"run-{day.isoformat()}", settings=settings)
        metrics = validate.run(spark, ws, ctx, "web_events")
        ingest.run(spark, ws, ctx, "web_events")
        return metrics

    land(DAY4, [hit("w1", DAY4), hit("w2", DAY4)])
    assert run_day(DAY4) == {"rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 1}
    lk = Lake(lake)
    table = lk.path(DATASET, "web_events")
    day4_files = {r["path"] for r in spark.sql(f"SELECT input_file_name() AS path FROM delta.`{table}`").collect()}

    # Day 5: the schema gains an optional field.
    schema_file.write_text(schema_file.read_text() + "  - {name: channel, type: string, enum: [web, app]}\n")
    land(DAY5, [hit("w3", DAY5, channel="app"), hit("w4", DAY5)])
    assert run_day(DAY5) == {"rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 1}

    stored = spark.read.format("delta").load(table)
    assert "channel" in stored.columns
    assert sorted(tuple(r) for r in stored.select("event_id", "channel", "_batch_date").collect()) == [
        ("w1", None, DAY4), ("w2", None, DAY4), ("w3", "app", DAY5), ("w4", None, DAY5)]
    staging = spark.read.format("delta").load(lk.path(STAGING, "web_events"))
    assert sorted(tuple(r) for r in staging.select("event_id", "channel").collect()) == [
        ("w1", None), ("w2", None), ("w3", "app"), ("w4", None)]
    # History is not rewritten: day 4's data files are still the table's, the MERGE removed none.
    last = DeltaTable.forPath(spark, table).history(1).first()
    assert last is not None and last["operation"] == "MERGE"
    assert last["operationMetrics"]["numTargetFilesRemoved"] == "0"
    now = {r["path"] for r in spark.sql(f"SELECT input_file_name() AS path FROM delta.`{table}`").collect()}
    assert day4_files <= now
    ledger = spark.read.format("delta").load(lk.path(BATCH_LEDGER))
    assert sorted(tuple(r) for r in ledger.select("batch_date", "rows_read", "rows_valid",
                                                  "rows_quarantined").collect()) == [(DAY4, 2, 2, 0), (DAY5, 2, 2, 0)]

    # Day 6: a type change is refused before anything is written.
    schema_file.write_text(schema_file.read_text().replace("{name: revenue, type: double}",
                                                           "{name: revenue, type: string}"))
    land(DAY6, [hit("w5", DAY6)])
    with pytest.raises(SchemaEvolutionError) as caught:
        run_day(DAY6)
    assert str(caught.value) == (
        f"dataset web_events: schema 'web_event' (schemas/web_event.yaml) is not compatible with the stored table "
        f"{table}: fields.revenue: field 'revenue' is double in the stored table but declared string: changing a "
        "type is a breaking change. Only additive changes are applied automatically (new optional fields); revert "
        "the change or add a new field instead")
    assert ledger.where(F.col("batch_date") == DAY6).count() == 0
