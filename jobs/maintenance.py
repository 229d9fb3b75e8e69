"""Step maintenance (DAG ``cdp_maintenance``, daily): keep the lake small and within its retention.

For the run date D and the workspace's ``maintenance:`` block (defaults in brackets):

1. Retention of rows, by their date column (a row of date < D - N days is deleted; the same D deletes the
   same rows, so a re-run changes nothing):
   - ``quarantine`` (``batch_date``) after ``quarantine_days`` [90];
   - metrics: ``run_metrics``, ``quality_results``, ``destination_metrics``, ``delivery_failures``
     (``run_date``) after ``metrics_days`` [400], and the dashboard's ``audience_sizes``, ``identity_summary``
     (``run_date``) and ``quarantine_summary`` (``batch_date``) as long;
   - ledgers: ``batch_ledger`` (``batch_date``), ``export_ledger``, ``delivery_ledger`` (``run_date``) after
     ``ledger_days`` [400]. A landed file older than that is no longer recognised as a duplicate, and an
     incremental destination whose last complete delivery is older starts over with a full export;
   - exited memberships: ``audience_membership`` rows of status ``exited`` whose ``status_since`` is older
     than ``exited_membership_days`` [30] (the evaluation carries them that long, then drops them itself).
2. Landing-zone files: the ``{date}`` folders of the local datasets' sources older than ``landing_days``
   [30] (null: kept) are removed from the landing root.
3. ``OPTIMIZE`` (small files compacted) then ``VACUUM ... RETAIN vacuum_retention_hours HOURS`` [168 = 7
   days] of every Delta table of the lake: data files that no table version younger than the retention
   needs are deleted (so time travel reaches back that far, and no longer).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession

from cdp import small_tables
from cdp.delta_io import table_exists, table_ref
from cdp.job import StepKey, run_job
from cdp.lake import (
    ALL_TABLES,
    AUDIENCE_MEMBERSHIP,
    AUDIENCE_SIZES,
    BATCH_LEDGER,
    DELIVERY_FAILURES,
    DELIVERY_LEDGER,
    DESTINATION_METRICS,
    EXPORT_LEDGER,
    IDENTITY_SUMMARY,
    QUALITY_RESULTS,
    QUARANTINE,
    QUARANTINE_SUMMARY,
    RUN_METRICS,
    Lake,
    TableSpec,
    date_literal,
)
from cdp.run_context import RunContext, job_parser
from cdp.workspace.loader import Workspace
from cdp.workspace.models import Maintenance

log = logging.getLogger(__name__)

STEP = "maintenance"
ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class RetentionRule:
    """Rows of ``table`` whose ``column`` is before the cutoff (the run date minus ``days``) are deleted;
    ``condition`` narrows the rule (SQL)."""

    table: TableSpec
    column: str
    days: int
    condition: str = ""

    def predicate(self, run_date: dt.date) -> str:
        """The DELETE predicate for the run date."""
        cutoff = run_date - dt.timedelta(days=self.days)
        where = f"{self.column} < {date_literal(cutoff)}"
        return f"{self.condition} AND {where}" if self.condition else where


def retention_rules(config: Maintenance) -> list[RetentionRule]:
    """Every row-retention rule of the lake under ``config``."""
    return [
        RetentionRule(QUARANTINE, "batch_date", config.quarantine_days),
        *(RetentionRule(t, "run_date", config.metrics_days)
          for t in (RUN_METRICS, QUALITY_RESULTS, DESTINATION_METRICS, DELIVERY_FAILURES)),
        RetentionRule(BATCH_LEDGER, "batch_date", config.ledger_days),
        *(RetentionRule(t, "run_date", config.ledger_days) for t in (EXPORT_LEDGER, DELIVERY_LEDGER)),
        RetentionRule(AUDIENCE_MEMBERSHIP, "status_since", config.exited_membership_days, "status = 'exited'"),
        # The Activation dashboard's aggregates live as long as the metrics they sit beside.
        *(RetentionRule(t, "run_date", config.metrics_days) for t in (AUDIENCE_SIZES, IDENTITY_SUMMARY)),
        RetentionRule(QUARANTINE_SUMMARY, "batch_date", config.metrics_days),
    ]


def table_paths(ws: Workspace, lake: Lake, small: bool = False) -> list[tuple[str, str]]:
    """(name, path) of every table the lake may hold (per-dataset tables once per dataset of the workspace): the
    Spark-written tables, or with ``small`` the bookkeeping tables delta-rs writes (:mod:`cdp.small_tables`)."""
    out: list[tuple[str, str]] = []
    for table in ALL_TABLES:
        if table.small != small:
            continue
        if "{dataset}" in table.path:
            out += [(f"{table.name}[{name}]", lake.path(table, name)) for name in sorted(ws.datasets)]
        else:
            out.append((table.name, lake.path(table)))
    return out


def apply_retention(spark: SparkSession, lake: Lake, rules: Sequence[RetentionRule], run_date: dt.date
                    ) -> dict[str, int]:
    """Delete the rows past their retention; return ``deleted.<table>`` counts (absent tables are skipped)."""
    counts: dict[str, int] = {}
    for rule in rules:
        path = lake.path(rule.table)
        if rule.table.small:
            small_deleted = small_tables.delete_rows(path, rule.predicate(run_date))
            if small_deleted is None:
                continue
            deleted = small_deleted
        else:
            if not table_exists(spark, path):
                continue
            row = spark.sql(f"DELETE FROM {table_ref(path)} WHERE {rule.predicate(run_date)}").first()
            deleted = int(row["num_affected_rows"]) if row is not None and row["num_affected_rows"] is not None else 0
        counts[f"deleted.{rule.table.name}"] = deleted
        log.info("%s: %d row(s) with %s deleted", rule.table.name, deleted, rule.predicate(run_date))
    return counts


def expired_landing_folders(ws: Workspace, landing_root: str, run_date: dt.date, days: int) -> list[str]:
    """The ``{date}`` folders of local dataset sources of run dates before ``run_date - days``, sorted."""
    cutoff = run_date - dt.timedelta(days=days)
    found: set[str] = set()
    for dataset in ws.datasets.values():
        source = dataset.source
        if source.type != "local" or "{date}" not in source.path:
            continue
        # The folder named by the date: everything after it in the template lives inside it.
        parent = source.path.split("{date}", 1)[0].rstrip("/")
        folder = os.path.join(landing_root, parent) if parent else landing_root
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if ISO_DAY.match(name) and os.path.isdir(path) and dt.date.fromisoformat(name) < cutoff:
                found.add(path)
    return sorted(found)


def optimize_and_vacuum(spark: SparkSession, paths: Sequence[tuple[str, str]], retain_hours: int) -> int:
    """OPTIMIZE then VACUUM every existing Delta table of ``paths``; return how many tables were maintained."""
    done = 0
    for name, path in paths:
        if not table_exists(spark, path):
            continue
        spark.sql(f"OPTIMIZE {table_ref(path)}").collect()
        spark.sql(f"VACUUM {table_ref(path)} RETAIN {int(retain_hours)} HOURS").collect()
        log.info("%s: optimized, vacuumed (files older than %d hours that no version needs removed)", name,
                 retain_hours)
        done += 1
    return done


def compact_and_vacuum_small(paths: Sequence[tuple[str, str]], retain_hours: int) -> int:
    """The same for the bookkeeping tables, with delta-rs (their only writer); return how many were maintained."""
    done = 0
    for name, path in paths:
        if small_tables.compact_and_vacuum(path, retain_hours):
            log.info("%s: compacted, vacuumed (files older than %d hours that no version needs removed)", name,
                     retain_hours)
            done += 1
    return done


def run(spark: SparkSession, ws: Workspace, ctx: RunContext) -> dict[str, int]:
    """Apply the lake's retention for the run date, remove expired landed files, OPTIMIZE and VACUUM every
    table; return the counts (``deleted.<table>``, ``landing_folders_removed``, ``tables_maintained``)."""
    config = ws.config.maintenance
    metrics = apply_retention(spark, ctx.lake, retention_rules(config), ctx.run_date)
    removed = 0
    if config.landing_days is not None:
        for folder in expired_landing_folders(ws, ctx.settings.landing, ctx.run_date, config.landing_days):
            shutil.rmtree(folder)
            log.info("landing: removed %s (older than %d days)", folder, config.landing_days)
            removed += 1
    metrics["landing_folders_removed"] = removed
    metrics["tables_maintained"] = (
        optimize_and_vacuum(spark, table_paths(ws, ctx.lake), config.vacuum_retention_hours)
        + compact_and_vacuum_small(table_paths(ws, ctx.lake, small=True), config.vacuum_retention_hours))
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m jobs.maintenance --run-date YYYY-MM-DD``."""
    parser = job_parser("Retention, OPTIMIZE and VACUUM of the lake for a run date.")
    run_job(parser, argv, lambda _args: StepKey(STEP), lambda spark, ws, ctx, _args: run(spark, ws, ctx),
            record=False)


if __name__ == "__main__":
    main()
