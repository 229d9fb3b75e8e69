"""The Activation view at a year of daily runs and 4,000 audiences: build the aggregates, time a page render.

    python -m bench.dashboard [--days 365] [--audiences 4000] [--destinations 20] [--work DIR]

The aggregate tables are written with ``deltalake`` (no Spark: this measures the reader, not the writer), one
commit per table and run date as the jobs make them, with a checkpoint every 10 commits as Spark writes them.
Then the page is rendered cold (a fresh reader: every table opened, its log read), warm (the same reader, no
new commit: served from the per-version cache), after one new commit (only the changed table re-read), and
for a filtered page (an audience search, one destination, the 40th page of audiences). Numbers are logged;
nothing is asserted on them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from cdp.lake import (
    AUDIENCE_CATALOG,
    AUDIENCE_SIZES,
    BATCH_LEDGER,
    DESTINATION_METRICS,
    IDENTITY_SUMMARY,
    QUALITY_RESULTS,
    QUARANTINE_SUMMARY,
    Lake,
    TableSpec,
)
from cdp.monitoring.dashboard_data import DashboardData

log = logging.getLogger("bench.dashboard")
END = dt.date(2026, 11, 29)
DATASETS = ("crm_profiles", "loyalty_members", "web_events", "email_events")


def _append(lake: Lake, spec: TableSpec, table: pa.Table) -> None:
    path = lake.path(spec)
    write_deltalake(path, table, mode="append", partition_by=spec.partition_by or None)
    version = DeltaTable(path).version()
    if version and version % 10 == 0:
        DeltaTable(path).create_checkpoint()


def build(lake: Lake, days: int, audiences: int, destinations: int, seed: int = 1) -> None:
    """The seven aggregate tables over ``days`` run dates ending on :data:`END`."""
    rng = random.Random(seed)
    ids = [f"aud_{i:04d}" for i in range(audiences)]
    dests = [f"dest_{i:02d}" for i in range(destinations)]
    size = [rng.randrange(0, 2_000_000) for _ in ids]
    for n in range(days):
        day = END - dt.timedelta(days=days - 1 - n)
        dates = pa.array([day] * audiences, pa.date32())
        realized = [rng.randrange(0, 5000) for _ in ids]
        exited = [rng.randrange(0, 5000) for _ in ids]
        size = [max(s + r - e, 0) for s, r, e in zip(size, realized, exited, strict=True)]
        _append(lake, AUDIENCE_SIZES, pa.table({
            "run_date": dates, "audience_id": ids, "size": pa.array(size, pa.int64()),
            "realized": pa.array(realized, pa.int64()), "existing": pa.array([max(s - r, 0) for s, r in zip(
                size, realized, strict=True)], pa.int64()), "exited": pa.array(exited, pa.int64())}))
        _append(lake, AUDIENCE_CATALOG, pa.table({
            "run_date": dates, "audience_id": ids, "name": [f"Audience {i}" for i in ids],
            "evaluation": ["streaming" if i % 8 == 0 else "batch" for i in range(audiences)],
            "reason": ["attribute-only rule" if i % 8 == 0 else "events over more than 24 hours"
                       for i in range(audiences)]}))
        k = len(dests)
        received = [rng.randrange(0, 100_000) for _ in dests]
        _append(lake, DESTINATION_METRICS, pa.table({
            "destination": dests, "run_date": pa.array([day] * k, pa.date32()),
            "run_id": [f"scheduled__{day}"] * k, "type": ["s3"] * k, "mode": ["incremental"] * k,
            "base_run_date": pa.array([day - dt.timedelta(days=1)] * k, pa.date32()),
            "received": pa.array(received, pa.int64()),
            "activated": pa.array([r - r // 10 for r in received], pa.int64()),
            "excluded": pa.array([[("consent", r // 10)] for r in received], pa.map_(pa.string(), pa.int64())),
            "failed": pa.array([0] * k, pa.int64()), "files": pa.array([3] * k, pa.int64()),
            "rows": pa.array([r - r // 10 for r in received], pa.int64()),
            "bytes": pa.array([r * 80 for r in received], pa.int64()), "status": ["delivered"] * k,
            "error": pa.array([None] * k, pa.string()),
            "failed_by": pa.array([None] * k, pa.map_(pa.string(), pa.int64())),
            "latency_p50_ms": pa.array([None] * k, pa.int64()), "latency_p95_ms": pa.array([None] * k, pa.int64())}))
        files = [(d, f"{d}/{day}/part-{j}.csv") for d in DATASETS for j in range(3)]
        _append(lake, BATCH_LEDGER, pa.table({
            "dataset": [d for d, _ in files], "batch_date": pa.array([day] * len(files), pa.date32()),
            "source_file": [f for _, f in files], "rows_read": pa.array([100_000] * len(files), pa.int64()),
            "rows_valid": pa.array([99_000] * len(files), pa.int64()),
            "rows_quarantined": pa.array([1_000] * len(files), pa.int64()), "status": ["ingested"] * len(files),
            "run_id": [f"scheduled__{day}"] * len(files), "sha256": ["0" * 64] * len(files),
            "identities_dropped": pa.array([0] * len(files), pa.int64())}))
        reasons = [(d, c) for d in DATASETS for c in ("invalid_identity", "missing_required", "bad_type",
                                                      "too_large", "unparseable")]
        _append(lake, QUARANTINE_SUMMARY, pa.table({
            "dataset": [d for d, _ in reasons], "batch_date": pa.array([day] * len(reasons), pa.date32()),
            "code": [c for _, c in reasons], "field": ["email"] * len(reasons),
            "records": pa.array([rng.randrange(1, 500) for _ in reasons], pa.int64()),
            "samples": pa.array([["C1,a***@e***.com,***78"] * 3] * len(reasons), pa.list_(pa.string()))}))
        _append(lake, IDENTITY_SUMMARY, pa.table({
            "run_date": pa.array([day], pa.date32()), "profiles": pa.array([5_000_000], pa.int64()),
            "identities": pa.array([14_000_000], pa.int64()), "links": pa.array([9_000_000], pa.int64()),
            "identities_per_profile": pa.array([[(n, 5_000_000 // (n * n)) for n in range(1, 51)]],
                                               pa.map_(pa.int64(), pa.int64())),
            **{c: pa.array([rng.randrange(0, 100)], pa.int64()) for c in (
                "links_dropped", "identities_dropped", "links_expired", "profile_merges", "profile_splits")}}))
        checks = 60
        _append(lake, QUALITY_RESULTS, pa.table({
            "run_date": pa.array([day] * checks, pa.date32()), "stage": [f"stage_{i % 6}" for i in range(checks)],
            "suite": [f"suite_{i % 6}" for i in range(checks)], "expectation": ["expect_x"] * checks,
            "kwargs": [f'{{"column": "c{i}"}}' for i in range(checks)], "success": [i != 7 for i in range(checks)],
            "observed": pa.array([None] * checks, pa.string())}))


def timed(label: str, render: object) -> float:
    started = time.perf_counter()
    body = render() if callable(render) else ""
    seconds = time.perf_counter() - started
    log.info("%-44s %7.0f ms  (%d bytes of HTML)", label, seconds * 1000, len(body))
    return seconds


def main(argv: list[str] | None = None) -> None:
    """Build the synthetic aggregates and log the page render times."""
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--audiences", type=int, default=4000)
    parser.add_argument("--destinations", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="time the lake already built under --work")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="cdp-bench-dashboard-"))
    lake = Lake(str(work / "lake"))
    if not args.reuse:
        shutil.rmtree(lake.root, ignore_errors=True)
        started = time.perf_counter()
        build(lake, args.days, args.audiences, args.destinations)
        log.info("built %d days x %d audiences, %d destinations in %.1f s under %s", args.days, args.audiences,
                 args.destinations, time.perf_counter() - started, lake.root)
    renders(lake, "as written (one file per commit and partition)")
    # cdp_maintenance compacts every table daily (OPTIMIZE): the layout a long-lived lake has.
    for spec in (AUDIENCE_SIZES, AUDIENCE_CATALOG, DESTINATION_METRICS, BATCH_LEDGER, QUARANTINE_SUMMARY,
                 IDENTITY_SUMMARY, QUALITY_RESULTS):
        DeltaTable(lake.path(spec)).optimize.compact()
    renders(lake, "after OPTIMIZE, as cdp_maintenance leaves it")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def renders(lake: Lake, layout: str) -> None:
    """Time the page renders of the module docstring over the lake as it is."""
    from cdp_provider.dashboard.activation_app import render

    log.info("-- %s", layout)
    data = DashboardData(lake.root)
    timed("first page, cold (tables opened)", lambda: render(data))
    timed("first page, warm (cache, no new commit)", lambda: render(data))
    timed("audience page 40", lambda: render(data, page=40))
    timed("audience search 'aud_12'", lambda: render(data, q="aud_12"))
    timed("one destination", lambda: render(data, dest="dest_07"))
    day = max(DashboardData(lake.root).quality_checks(1)[0].run_date, END) + dt.timedelta(days=1)
    _append(lake, QUALITY_RESULTS, pa.table({
        "run_date": pa.array([day], pa.date32()), "stage": ["stage_0"], "suite": ["suite_0"],
        "expectation": ["expect_x"], "kwargs": ["{}"], "success": [True], "observed": pa.array([None], pa.string())}))
    timed("first page after one new commit", lambda: render(data))


if __name__ == "__main__":
    main()
