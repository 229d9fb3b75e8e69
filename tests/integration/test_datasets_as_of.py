"""A dataset as of a past run date: a backfill sees the record that stood then, not a later one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import SparkSession

from cdp.datasets import read_dataset_as_of
from cdp.lake import DATASET, STAGING, Lake
from cdp.schemas import dataset_struct
from cdp.workspace.loader import load_workspace

DAY1, DAY2 = dt.date(2026, 11, 26), dt.date(2026, 11, 27)


def crm_row(city: str, day: dt.date, hour: int) -> tuple[object, ...]:
    updated = dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)
    return ("C1", "a@x.com", None, "Ann", None, None, "FR", city, True, updated, "crm.csv", 2, day, updated)


def test_backfill_of_a_replaced_profile_record_reads_the_staging_history(spark: SparkSession, lake: str,
                                                                          repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    struct = dataset_struct(ws.schema_of("crm_profiles"))
    # Staging keeps every batch; the MERGEd table keeps only the newest record of C1 (day 2).
    spark.createDataFrame([crm_row("Paris", DAY1, 8), crm_row("Lyon", DAY2, 8)], struct).write.format(
        "delta").partitionBy("_batch_date").save(Lake(lake).path(STAGING, "crm_profiles"))
    spark.createDataFrame([crm_row("Lyon", DAY2, 8)], struct).write.format("delta").save(
        Lake(lake).path(DATASET, "crm_profiles"))

    def cities(day: dt.date) -> list[tuple[str, str]]:
        rows = read_dataset_as_of(spark, Lake(lake), ws, "crm_profiles", day).collect()
        return [(r["crm_id"], r["city"]) for r in rows]

    assert cities(DAY1) == [("C1", "Paris")]
    assert cities(DAY2) == [("C1", "Lyon")]
    assert cities(dt.date(2026, 11, 25)) == []
