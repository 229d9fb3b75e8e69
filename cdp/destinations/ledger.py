"""The export ledger: what each file destination was sent, file by file, and what is still to deliver.

Protocol of one run: the rendered files are *planned* (name, rows, bytes, SHA-256) before any upload;
each file is marked *delivered* only after the target confirmed it. A re-run after a crash or a timeout
plans the same names (rendering is deterministic) and skips every file already delivered with the same
SHA-256, so nothing is sent twice under another name and nothing is skipped that was not sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import read_table, replace_slice, retry_on_conflict, sql_string, table_exists, update_table
from cdp.destinations.render import RenderedFile
from cdp.lake import DESTINATION_METRICS, EXPORT_LEDGER, Lake, date_literal

PLANNED = "planned"
DELIVERED = "delivered"


@dataclass(frozen=True)
class LedgerEntry:
    file_name: str
    sha256: str
    status: str
    run_id: str | None = None
    kind: str = "data"


def _slice(destination: str, run_date: dt.date) -> str:
    return f"destination = '{destination}' AND run_date = {date_literal(run_date)}"


def entries(spark: SparkSession, lake: Lake, destination: str, run_date: dt.date) -> dict[str, LedgerEntry]:
    """The ledger rows of one destination and run date, by file name."""
    rows = read_table(spark, lake.path(EXPORT_LEDGER), EXPORT_LEDGER.schema).where(
        (F.col("destination") == destination) & (F.col("run_date") == F.lit(run_date))).collect()
    return {r["file_name"]: LedgerEntry(r["file_name"], r["sha256"], r["status"], r["run_id"], r["kind"])
            for r in rows}


def base_run_date(spark: SparkSession, lake: Lake, destination: str, before: dt.date) -> dt.date | None:
    """The latest run date before ``before`` whose data files were all delivered (None: there is none)."""
    path = lake.path(EXPORT_LEDGER)
    if not table_exists(spark, path):
        return None
    runs = (read_table(spark, path).where((F.col("destination") == destination) & (F.col("run_date") < F.lit(before))
                                          & (F.col("kind") == "data"))
            .groupBy("run_date").agg(F.min(F.when(F.col("status") == DELIVERED, 1).otherwise(0)).alias("all"))
            .where(F.col("all") == 1).agg(F.max("run_date").alias("d")).first())
    return None if runs is None else runs["d"]


def plan(spark: SparkSession, lake: Lake, destination: str, run_date: dt.date, run_id: str, mode: str,
         base: dt.date | None, files: Sequence[RenderedFile], locations: dict[str, str]) -> dict[str, LedgerEntry]:
    """Record the run's files as planned (keeping delivered the ones already delivered with the same bytes);
    return the ledger entries as they were before, by name."""
    before = entries(spark, lake, destination, run_date)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for f in files:
        kept = before.get(f.name)
        delivered = kept is not None and kept.status == DELIVERED and kept.sha256 == f.sha256
        rows.append((destination, run_date, f.name, f.kind, f.audience_id, f.rows, f.bytes, f.sha256,
                     locations[f.name], mode, base, DELIVERED if delivered else PLANNED, run_id, now,
                     now if delivered else None))
    assert EXPORT_LEDGER.schema is not None
    replace_slice(spark.createDataFrame(rows, EXPORT_LEDGER.schema), lake.path(EXPORT_LEDGER),
                  _slice(destination, run_date), EXPORT_LEDGER.partition_by)
    return before


@retry_on_conflict
def mark_delivered(spark: SparkSession, lake: Lake, destination: str, run_date: dt.date, name: str,
                   location: str) -> None:
    """The target confirmed ``name``: mark it delivered."""
    condition = f"{_slice(destination, run_date)} AND file_name = '{name.replace(chr(39), chr(39) * 2)}'"
    update_table(spark, lake.path(EXPORT_LEDGER), condition, {
        "status": sql_string(DELIVERED), "delivered_at": "current_timestamp()", "location": sql_string(location)})


def delivered_names(spark: SparkSession, lake: Lake, destination: str) -> set[str]:
    """Every file name this destination was ever delivered (what its landing-zone retention may remove)."""
    path = lake.path(EXPORT_LEDGER)
    if not table_exists(spark, path):
        return set()
    rows = (read_table(spark, path).where((F.col("destination") == destination) & (F.col("status") == DELIVERED))
            .select("file_name").distinct().collect())
    return {r["file_name"] for r in rows}


def record_destination_metrics(spark: SparkSession, lake: Lake, row: tuple[object, ...], destination: str,
                               run_date: dt.date) -> None:
    """Replace the destination's metrics row of the run date (DESTINATION_METRICS columns; trailing columns
    added later, such as the streaming latencies, may be left out and are written null)."""
    assert DESTINATION_METRICS.schema is not None
    padded = tuple(row) + (None,) * (len(DESTINATION_METRICS.schema.fields) - len(row))
    replace_slice(spark.createDataFrame([padded], DESTINATION_METRICS.schema), lake.path(DESTINATION_METRICS),
                  _slice(destination, run_date), DESTINATION_METRICS.partition_by, add_new_columns=True)
