"""Ingestion benchmark: rows per second validated and ingested for the generator's data, with peak memory."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

from pyspark.sql import SparkSession

from bench.measure import measure
from cdp.generator import generate
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import Workspace
from jobs import ingest, validate

log = logging.getLogger(__name__)

# Rows landed per generated person on the first day (CRM + loyalty + web + email), measured on the
# generator's output; used to size a run for a target row count.
ROWS_PER_PERSON = 3.6
DAY = dt.date(2026, 11, 27)


def bench_ingest(spark: SparkSession, ws: Workspace, work: Path, rows: int) -> dict[str, float]:
    """Generate about ``rows`` landed rows, then validate and ingest every dataset of one day."""
    persons = max(1, int(rows / ROWS_PER_PERSON))
    landing, lake = work / f"landing-{rows}", work / f"lake-{rows}"
    shutil.rmtree(lake, ignore_errors=True)
    if not landing.exists():
        generate(landing, profiles=persons, days=1, seed=7, end_date=DAY)
    ctx = RunContext(DAY, "bench", Settings(workspace=str(ws.root), lake=str(lake), landing=str(landing),
                                            exports=str(work / "exports")))
    read = 0
    with measure() as validated:
        for name in sorted(ws.datasets):
            read += validate.run(spark, ws, ctx, name)["rows_read"]
    with measure() as ingested:
        for name in sorted(ws.datasets):
            ingest.run(spark, ws, ctx, name)
    total = validated.seconds + ingested.seconds
    return {
        "rows_read": read,
        "validate_s": round(validated.seconds, 1),
        "ingest_s": round(ingested.seconds, 1),
        "rows_per_s": round(read / total),
        "peak_rss_mib": round(max(validated.peak_rss_mib, ingested.peak_rss_mib)),
    }
