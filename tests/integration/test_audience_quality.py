"""The audience gate: a size swing since the previous run is a recorded WARNING, never a failed run."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.lake import AUDIENCE_MEMBERSHIP, QUALITY_RESULTS, Lake
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import load_workspace
from jobs import check_quality

D1, D2 = dt.date(2026, 11, 26), dt.date(2026, 11, 27)


def test_size_change_warns_and_is_recorded(spark: SparkSession, lake: str, repo_root: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    spark.createDataFrame([(D2, f"p{i}") for i in range(10)], "run_date date, profile_id string").write.format(
        "delta").save(f"{lake}/profiles")
    ts = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    rows = ([(D1, "gold_members", f"p{i}", "realized", ts, D1, None, None) for i in range(10)]  # 10 -> 4: -60%
            + [(D2, "gold_members", f"p{i}", "existing", ts, D1, None, None) for i in range(4)]
            + [(D2, "gold_members", f"p{i}", "exited", ts, D2, "not_qualified", None) for i in range(4, 10)]
            + [(D1, "french_high_points", f"p{i}", "realized", ts, D1, None, None) for i in range(4)]  # 4 -> 5: +25%
            + [(D2, "french_high_points", f"p{i}", "existing", ts, D1, None, None) for i in range(5)])
    spark.createDataFrame(rows, AUDIENCE_MEMBERSHIP.schema).write.format("delta").partitionBy("run_date").save(
        Lake(lake).path(AUDIENCE_MEMBERSHIP))
    ctx = RunContext(D2, "test", Settings(workspace="", lake=lake, landing="", exports=""))
    with caplog.at_level(logging.WARNING, logger="jobs.check_quality"):
        outcomes = check_quality.run(spark, ws, ctx, "audiences")  # does not raise
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "jobs.check_quality" and r.levelno == logging.WARNING]
    assert warnings[0] == "audience gold_members: size changed from 10 on 2026-11-26 to 4 (60% > 50%)"
    assert warnings[1].startswith("data-quality warning at stage 'audiences': audience_size_change: "
                                  "expect_column_values_to_be_between(")
    assert [(o.suite, o.success) for o in outcomes][-1] == ("audience_size_change", False)
    recorded = spark.read.format("delta").load(Lake(lake).path(QUALITY_RESULTS)).where(
        F.col("suite") == "audience_size_change").collect()
    assert [(r["run_date"], r["success"]) for r in recorded] == [(D2, False)]
