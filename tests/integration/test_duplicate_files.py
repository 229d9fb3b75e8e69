"""A file landed again (another day, another name) is never ingested twice; a late file is picked up by a backfill."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.lake import BATCH_LEDGER, DATASET, QUARANTINE, Lake
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import ingest, validate

DAY4, DAY5 = dt.date(2024, 1, 4), dt.date(2024, 1, 5)
E1 = "1" * 38


@pytest.fixture()
def example(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


def hits(*ids: str) -> str:
    return "".join(f'{{"event_id":"{i}","event_type":"page_view","timestamp":"2024-01-04T10:00:00Z","ecid":"{E1}"}}\n'
                   for i in ids)


def land(tmp_path: Path, day: dt.date, name: str, content: str) -> str:
    path = tmp_path / "landing" / "web" / day.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return str(path)


def run_day(spark: SparkSession, ws: Workspace, tmp_path: Path, lake: str, day: dt.date) -> dict[str, int]:
    ctx = RunContext(run_date=day, run_id=f"run-{day.isoformat()}", settings=Settings(
        workspace="unused", lake=lake, landing=str(tmp_path / "landing"), exports=str(tmp_path / "exports")))
    metrics = validate.run(spark, ws, ctx, "web_events")
    ingest.run(spark, ws, ctx, "web_events")
    return metrics


def ledger(spark: SparkSession, lake: str) -> list[tuple[object, ...]]:
    df = spark.read.format("delta").load(Lake(lake).path(BATCH_LEDGER))
    return sorted((r["batch_date"], Path(r["source_file"]).name, r["rows_read"], r["rows_valid"],
                   r["rows_quarantined"], r["status"], r["sha256"]) for r in df.collect())


def quarantine(spark: SparkSession, lake: str) -> list[tuple[object, ...]]:
    df = spark.read.format("delta").load(Lake(lake).path(QUARANTINE))
    return sorted((r["batch_date"], Path(r["source_file"]).name, r["row_number"], r["raw"],
                   [(x["code"], x["message"]) for x in r["reasons"]]) for r in df.collect())


def events(spark: SparkSession, lake: str) -> list[tuple[object, ...]]:
    df = spark.read.format("delta").load(Lake(lake).path(DATASET, "web_events"))
    return sorted((r["event_id"], r["_batch_date"], Path(r["_source_file"]).name) for r in df.collect())


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_relanded_file_is_quarantined_once_as_a_whole(spark: SparkSession, example: Workspace, lake: str,
                                                      tmp_path: Path) -> None:
    first, other = hits("w1", "w2"), hits("w3")
    original = land(tmp_path, DAY4, "hits.jsonl", first)
    assert run_day(spark, example, tmp_path, lake, DAY4) == {
        "rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 1}
    # Day 5 receives the same file again under another name, plus one copy of a new file landed twice.
    land(tmp_path, DAY5, "hits_resent.jsonl", first)
    land(tmp_path, DAY5, "new.jsonl", other)
    land(tmp_path, DAY5, "new_copy.jsonl", other)
    expected = {"rows_read": 3, "rows_valid": 1, "rows_quarantined": 2, "files": 3}
    assert run_day(spark, example, tmp_path, lake, DAY5) == expected
    dup_resent = (f"file has the same content (sha256 {sha(first)}) as {original}, ingested with the batch of "
                  "2024-01-04: its records are not ingested twice")
    new_path = str(tmp_path / "landing" / "web" / DAY5.isoformat() / "new.jsonl")
    dup_copy = (f"file has the same content (sha256 {sha(other)}) as {new_path}, ingested with the batch of "
                "2024-01-05: its records are not ingested twice")
    assert quarantine(spark, lake) == [
        (DAY5, "hits_resent.jsonl", None, None, [("duplicate_file", dup_resent)]),
        (DAY5, "new_copy.jsonl", None, None, [("duplicate_file", dup_copy)]),
    ]
    assert ledger(spark, lake) == [
        (DAY4, "hits.jsonl", 2, 2, 0, "ingested", sha(first)),
        (DAY5, "hits_resent.jsonl", 1, 0, 1, "duplicate", sha(first)),
        (DAY5, "new.jsonl", 1, 1, 0, "ingested", sha(other)),
        (DAY5, "new_copy.jsonl", 1, 0, 1, "duplicate", sha(other)),
    ]
    assert events(spark, lake) == [("w1", DAY4, "hits.jsonl"), ("w2", DAY4, "hits.jsonl"),
                                   ("w3", DAY5, "new.jsonl")]
    # Re-running either day changes nothing: a day's own files are never duplicates of themselves.
    before = (ledger(spark, lake), quarantine(spark, lake), events(spark, lake))
    assert run_day(spark, example, tmp_path, lake, DAY5) == expected
    assert run_day(spark, example, tmp_path, lake, DAY4) == {
        "rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 1}
    assert (ledger(spark, lake), quarantine(spark, lake), events(spark, lake)) == before
    # A duplicate file does not count towards the rejected share (here 2 of 3 records).
    assert spark.read.format("delta").load(Lake(lake).path(BATCH_LEDGER)).where(
        F.col("status") == "rejected").count() == 0


def test_late_file_is_picked_up_by_a_backfill(spark: SparkSession, example: Workspace, lake: str,
                                              tmp_path: Path) -> None:
    land(tmp_path, DAY4, "hits.jsonl", hits("w1"))
    land(tmp_path, DAY5, "hits.jsonl", hits("w2"))
    run_day(spark, example, tmp_path, lake, DAY4)
    run_day(spark, example, tmp_path, lake, DAY5)
    # A file for day 4 arrives after day 5 ran: the backfill of day 4 loads it, and only it is new.
    land(tmp_path, DAY4, "late.jsonl", hits("w3"))
    assert run_day(spark, example, tmp_path, lake, DAY4) == {
        "rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 2}
    assert events(spark, lake) == [("w1", DAY4, "hits.jsonl"), ("w2", DAY5, "hits.jsonl"),
                                   ("w3", DAY4, "late.jsonl")]
    assert [row[:6] for row in ledger(spark, lake)] == [
        (DAY4, "hits.jsonl", 1, 1, 0, "ingested"), (DAY4, "late.jsonl", 1, 1, 0, "ingested"),
        (DAY5, "hits.jsonl", 1, 1, 0, "ingested")]
    assert quarantine(spark, lake) == []
