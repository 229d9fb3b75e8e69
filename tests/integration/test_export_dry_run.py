"""A dry run of the exports: what a file destination and a streaming destination (a real HTTP API on loopback,
tests/servers/http_receiver.py) would receive is rendered into the lake's preview folder and recorded in
export_previews; nothing is delivered and no ledger changes, so the real run of the day then delivers exactly
what the preview showed; a dry run after the real run says that nothing would be sent again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.streaming import HttpReceiver
from streaming_lake import context, valid, workspace_with, write_day

from cdp.delta_io import read_table
from cdp.destinations.preview import preview_folder
from cdp.lake import (
    DELIVERY_FAILURES,
    DELIVERY_LEDGER,
    DESTINATION_METRICS,
    EXPORT_LEDGER,
    EXPORT_PREVIEWS,
    QUALITY_RESULTS,
    Lake,
)
from cdp.report import collect_report, format_report
from jobs import check_quality, export

D1, D2 = dt.date(2026, 11, 25), dt.date(2026, 11, 26)
HTTP = """name: crm_api
type: http
connection: crm_api
path: /v1/profiles
audiences: [gold_members]
mapping:
  - {source: "identity:crm_id", name: crm_id}
  - {source: first_name, name: firstName}
  - {source: points}
"""
FILES = """name: crm_files
type: local
path: crm
format: csv
export: incremental
audiences: [gold_members]
file_name: "{destination}_{audience_id}_{date}"
mapping:
  - {source: "identity:crm_id", name: crm_id}
  - {source: first_name}
  - {source: points}
"""
DAY1 = {"p1": ("C1", None, "Ann", 100), "p2": ("C2", None, "Bob", 200), "p3": (None, None, "Nobody", 1)}
MEMBERS1 = {p: ("realized", D1) for p in DAY1}
# Day 2: Ann's points change, Bob leaves, Cy enters; p3 (no identity, excluded on day 1) is no change.
DAY2 = {"p1": ("C1", None, "Ann", 150), "p3": (None, None, "Nobody", 1), "p4": ("C4", None, "Cy", 400)}
MEMBERS2 = {"p1": ("existing", D1), "p2": ("exited", D1), "p3": ("existing", D1), "p4": ("realized", D2)}
HEADER = "crm_id,first_name,points,membership_status,last_qualification_time"
LEDGERS = (EXPORT_LEDGER, DELIVERY_LEDGER, DELIVERY_FAILURES, DESTINATION_METRICS)


@pytest.fixture()
def receiver(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> HttpReceiver:
    http_receiver.control("reset")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_API", json.dumps(http_receiver.connection()))
    monkeypatch.setenv("CDP_STREAM_PARTITIONS", "1")
    return http_receiver


def snapshot(spark: SparkSession, lake: Lake) -> dict[str, list[str]]:
    """Every row of the ledgers and the destination metrics, as sorted JSON lines."""
    return {t.name: sorted(json.dumps(r.asDict(recursive=True), default=str, sort_keys=True)
                           for r in read_table(spark, lake.path(t), t.schema).collect()) for t in LEDGERS}


def preview_row(spark: SparkSession, lake: Lake, destination: str, day: dt.date) -> dict[str, Any]:
    rows = read_table(spark, lake.path(EXPORT_PREVIEWS)).where(
        (F.col("destination") == destination) & (F.col("run_date") == F.lit(day))).collect()
    assert len(rows) == 1
    row = rows[0].asDict(recursive=True)
    return {k: row[k] for k in ("run_id", "type", "mode", "base_run_date", "received", "activated", "excluded",
                                "failed", "files", "rows", "bytes", "messages", "already_delivered", "file_list",
                                "location")}


def metrics_row(spark: SparkSession, lake: Lake, destination: str, day: dt.date) -> dict[str, Any]:
    row = read_table(spark, lake.path(DESTINATION_METRICS)).where(
        (F.col("destination") == destination) & (F.col("run_date") == F.lit(day))).first()
    assert row is not None
    return {k: row[k] for k in ("mode", "base_run_date", "received", "activated", "excluded", "failed", "files",
                                "rows", "bytes")}


def without_run(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in valid(message).items() if k != "runId"}


def test_dry_run_delivers_nothing_then_the_real_run_delivers_the_preview(
        spark: SparkSession, tmp_path: Path, receiver: HttpReceiver) -> None:
    _, ws, settings = workspace_with(tmp_path, {"crm_api": HTTP, "crm_files": FILES})
    lake = context(settings, D1).lake
    write_day(spark, lake, D1, DAY1, MEMBERS1)
    for name in ("crm_api", "crm_files"):
        export.run(spark, ws, context(settings, D1), name)
    write_day(spark, lake, D2, DAY2, MEMBERS2)
    receiver.control("reset")
    before = snapshot(spark, lake)

    dry = context(settings, D2, "manual__dry")
    files_preview = export.run(spark, ws, dry, "crm_files", dry_run=True)
    stream_preview = export.run(spark, ws, dry, "crm_api", dry_run=True)

    # Nothing delivered: no request reached the API, no file in the exports folder, no ledger row changed.
    assert receiver.requests() == []
    assert not (tmp_path / "exports" / "crm" / "crm_files_gold_members_20261126.csv").exists()
    assert snapshot(spark, lake) == before
    # What the preview says, and holds: the incremental file of day 2, and the three messages.
    folder = Path(preview_folder(settings.lake, D2, "crm_files"))
    rendered = (folder / "crm_files_gold_members_20261126.csv").read_bytes()
    assert rendered.decode().splitlines() == [
        HEADER, "C1,Ann,150,existing,2026-11-27T00:00:00Z", "C2,Bob,200,exited,2026-11-26T00:00:00Z",
        "C4,Cy,400,realized,2026-11-27T00:00:00Z"]
    files_row = preview_row(spark, lake, "crm_files", D2)
    sha = files_row["file_list"][0]["sha256"]
    assert files_row == {
        "run_id": "manual__dry", "type": "local", "mode": "incremental", "base_run_date": D1, "received": 3,
        "activated": 3, "excluded": {"consent": 0, "no_identity": 0, "missing_mandatory": 0, "deduplicated": 0},
        "failed": 0, "files": 1, "rows": 3, "bytes": len(rendered), "messages": 0, "already_delivered": 0,
        "file_list": [{"file_name": "crm_files_gold_members_20261126.csv", "kind": "data",
                       "audience_id": "gold_members", "rows": 3, "bytes": len(rendered), "sha256": sha,
                       "already_delivered": False}],
        "location": str(folder)}
    message_files = sorted((Path(preview_folder(settings.lake, D2, "crm_api")) / "messages").glob("part-*"))
    lines = [line for f in message_files for line in f.read_text().splitlines()]
    previewed = [json.loads(line) for line in lines]
    assert [m["profileId"] for m in previewed] == ["p1", "p2", "p4"]
    assert {m["runId"] for m in previewed} == {"manual__dry"}
    stream_row = preview_row(spark, lake, "crm_api", D2)
    assert stream_row == {
        "run_id": "manual__dry", "type": "http", "mode": "incremental", "base_run_date": D1, "received": 3,
        "activated": 3, "excluded": {"consent": 0, "no_identity": 0, "missing_mandatory": 0}, "failed": 0,
        "files": 0, "rows": 3, "bytes": sum(len(line.encode()) for line in lines),
        "messages": 3, "already_delivered": 0, "file_list": [],
        "location": preview_folder(settings.lake, D2, "crm_api")}
    assert (files_preview["activated"], stream_preview["messages"]) == (3, 3)
    # The export gate of a dry run reconciles the previews, recorded as stage export_previews.
    check_quality.run(spark, ws, dry, "exports", dry_run=True)
    stages = {r["stage"] for r in read_table(spark, lake.path(QUALITY_RESULTS)).where(
        F.col("run_date") == F.lit(D2)).collect()}
    assert stages == {"export_previews"}
    report = format_report(collect_report(spark, lake, D2)).splitlines()
    start = report.index("dry run (nothing delivered): what each destination would receive")
    assert report[start + 2:] == [
        f"crm_api               http       incremental         3         3        0      0     0       3"
        f"{stream_row['bytes']:>10}        3  manual__dry",
        f"  preview: {preview_folder(settings.lake, D2, 'crm_api')}",
        f"crm_files             local      incremental         3         3        0      0     1       3"
        f"{len(rendered):>10}        0  manual__dry",
        f"  crm_files_gold_members_20261126.csv (data, 3 rows, {len(rendered)} bytes)",
        f"  preview: {folder}"]

    # The real run of the day delivers exactly the preview: the same bytes, the same messages, the same counts.
    real = context(settings, D2)
    for name in ("crm_api", "crm_files"):
        export.run(spark, ws, real, name)
    assert (tmp_path / "exports" / "crm" / "crm_files_gold_members_20261126.csv").read_bytes() == rendered
    assert [without_run(m) for m in sorted(receiver.messages(), key=lambda m: m["profileId"])] == [
        without_run(m) for m in previewed]
    assert metrics_row(spark, lake, "crm_files", D2) == {
        k: files_row[k] for k in ("mode", "base_run_date", "received", "activated", "excluded", "failed", "files",
                                  "rows", "bytes")}
    delivered = metrics_row(spark, lake, "crm_api", D2)
    assert {k: v for k, v in delivered.items() if k != "bytes"} == {
        k: stream_row[k] for k in ("mode", "base_run_date", "received", "activated", "excluded", "failed", "files",
                                   "rows")}
    # Payloads carry their run id: the real run's bytes differ by the length of its id, message by message.
    assert delivered["bytes"] == stream_row["bytes"] + 3 * (len(real.run_id) - len("manual__dry"))

    # A dry run after the real run: the same preview, and nothing that a real re-run would send again.
    receiver.control("reset")
    after = snapshot(spark, lake)
    export.run(spark, ws, context(settings, D2, "manual__dry2"), "crm_files", dry_run=True)
    export.run(spark, ws, context(settings, D2, "manual__dry2"), "crm_api", dry_run=True)
    assert receiver.requests() == [] and snapshot(spark, lake) == after
    again = preview_row(spark, lake, "crm_files", D2)
    assert (again["already_delivered"], again["file_list"][0]["already_delivered"], again["bytes"]) == (
        1, True, len(rendered))
    stream_again = preview_row(spark, lake, "crm_api", D2)
    assert (stream_again["messages"], stream_again["already_delivered"], stream_again["activated"]) == (0, 3, 3)
    assert stream_again["bytes"] == delivered["bytes"]
