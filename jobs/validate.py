"""Validate one dataset's landed files for a run date (step ``validate``).


See :mod:`cdp.ingestion.reasons` for the reason codes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp import small_tables
from cdp.datasets import stored_event_ids
from cdp.delta_io import replace_slice
from cdp.errors import BatchRejectedError, CdpError
from cdp.ingestion.checks import (
    rejection_message,
    transform_check,
    transform_quarantine,
    transform_valid,
    unreadable_rows,
)
from cdp.ingestion.landing import check_spark_reads_s3, landed_hashes, list_landed_files
from cdp.ingestion.layout import DROPPED, REASONS
from cdp.ingestion.ledger import FileCounts, find_duplicate_files, ingested_hashes, ledger_rows
from cdp.ingestion.reasons import DUPLICATE_FILE
from cdp.ingestion.records import read_records
from cdp.job import StepKey, record_metrics, run_job
from cdp.lake import BATCH_LEDGER, DATASET, QUARANTINE, QUARANTINE_SUMMARY, STAGING, date_literal
from cdp.monitoring.aggregates import quarantine_summary
from cdp.run_context import RunContext, job_parser
from cdp.schema_evolution import check_against_table
from cdp.schemas import BATCH_DATE, SOURCE_FILE, dataset_struct
from cdp.workspace.loader import Workspace

log = logging.getLogger(__name__)

STEP = "validate"


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, dataset: str) -> dict[str, int]:
    """Validate a dataset's landed files for ``ctx.run_date``; write staging, quarantine and ledger slices.

    Raises SchemaEvolutionError (before writing anything) when the declared schema breaks the
    dataset's stored table, and BatchRejectedError (after writing everything and recording the
    metrics) when the quarantined share exceeds ``guardrails.max_rejected_share``. Files of an S3
    source are read in place (Spark through S3A; the driver streams each object once to hash it): nothing
    lands on the driver's disk.
    """
    if dataset not in ws.datasets:
        raise CdpError(f"dataset '{dataset}' is not defined in workspace {ws.config.name} "
                       f"(datasets: {', '.join(sorted(ws.datasets))})")
    spec = ws.datasets[dataset]
    schema = ws.schema_of(dataset)
    # Refused before anything is written: a breaking change would fail (or corrupt) the MERGE later.
    check_against_table(schema, ctx.lake.path(DATASET, dataset), dataset,
                        ws.files.get(f"schemas/{schema.name}", f"schemas/{schema.name}.yaml"))
    files = list_landed_files(ctx.settings, spec, ctx.run_date)
    # Before anything is read or written: a session without S3A would fail on the first object, a Parquet one
    # would even be quarantined as unreadable.
    check_spark_reads_s3(spark, spec, files)
    guardrails = ws.config.guardrails
    run_date = ctx.run_date
    lake = ctx.lake
    # A file whose content another run date (or an earlier file of this run) brought in is not read again.
    hashes = landed_hashes(spec, files)
    duplicates = find_duplicate_files(files, hashes, ingested_hashes(spark, lake, dataset, run_date,
                                                                     list(hashes.values())), run_date)
    skipped = {d.path for d in duplicates}
    parsed, unreadable = read_records(spark, spec, schema, [f for f in files if f not in skipped])
    unreadable = [*unreadable, *duplicates]
    # Counting, staging and quarantine all read the checked records: compute them once.
    stored = stored_event_ids(spark, lake, schema, dataset, before=run_date)
    checked = transform_check(parsed, schema, guardrails, ws.namespaces, run_date, stored).persist()
    try:
        counts = {
            row["file"]: FileCounts(row["read"], row["quarantined"], row["dropped"])
            for row in checked.groupBy(F.col(SOURCE_FILE).alias("file")).agg(
                F.count(F.lit(1)).alias("read"),
                F.sum(F.when(F.size(REASONS) > 0, 1).otherwise(0)).alias("quarantined"),
                F.sum(F.size(DROPPED)).alias("dropped"),
            ).collect()
        }
        # Identity values dropped from valid records, by reason (counts only: values are PII).
        dropped = {f"identities_dropped.{r['code']}": int(r["count"]) for r in checked.select(
            F.explode(F.col(DROPPED).code).alias("code")).groupBy("code").count().collect()}
        read = sum(c.read for c in counts.values()) + len(unreadable)
        quarantined = sum(c.quarantined for c in counts.values()) + len(unreadable)
        allowed = guardrails.max_rejected_share
        # A re-delivered file says nothing about the quality of this batch: it does not count towards rejection.
        judged_read, judged_quarantined = read - len(duplicates), quarantined - len(duplicates)
        rejected = judged_read > 0 and judged_quarantined / judged_read > allowed

        quarantine = transform_quarantine(checked, dataset, run_date)
        if unreadable:
            quarantine = quarantine.unionByName(
                spark.createDataFrame(unreadable_rows(unreadable, dataset, run_date), QUARANTINE.schema))
        slice_predicate = f"dataset = '{dataset}' AND batch_date = {date_literal(run_date)}"
        replace_slice(quarantine, lake.path(QUARANTINE), slice_predicate, QUARANTINE.partition_by)
        # The dashboard's view of it: counts per reason and a few masked samples (cdp.monitoring).
        small_tables.replace_rows(lake.path(QUARANTINE_SUMMARY), QUARANTINE_SUMMARY, quarantine_summary(quarantine),
                                  {"dataset": dataset, "batch_date": run_date})

        ledger = ledger_rows(files, counts, unreadable, dataset, run_date, ctx.run_id, rejected, hashes)
        # add_new_columns: a ledger written before the sha256 column existed gains it.
        small_tables.replace_rows(lake.path(BATCH_LEDGER), BATCH_LEDGER, ledger,
                                  {"dataset": dataset, "batch_date": run_date}, add_new_columns=True)

        # A rejected batch leaves an empty staging slice, so ingest cannot load it (nor an older attempt).
        staged = (spark.createDataFrame([], dataset_struct(schema)) if rejected
                  else transform_valid(checked, schema, run_date))
        replace_slice(staged, lake.path(STAGING, dataset), f"{BATCH_DATE} = {date_literal(run_date)}",
                      STAGING.partition_by, add_new_columns=True)

        metrics = {"rows_read": read, "rows_valid": read - quarantined, "rows_quarantined": quarantined,
                   "files": len(files), **dropped}
        if rejected:
            top = (quarantine.select(F.explode("reasons.code").alias("code")).where(F.col("code") != DUPLICATE_FILE)
                   .groupBy("code").count().orderBy(F.desc("count"), "code").limit(3).collect())
            message = rejection_message(dataset, judged_read, judged_quarantined, allowed,
                                        [(r["code"], r["count"]) for r in top])
            # The job records metrics only after run() returns: record them here, the run stops below.
            record_metrics(lake, run_date, STEP, dataset, metrics)
            raise BatchRejectedError(message)
    finally:
        checked.unpersist()
    log.info("dataset %s, %s: %d files, %d records, %d valid, %d quarantined", dataset, run_date, len(files),
             read, read - quarantined, quarantined)
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: validate one dataset for one run date."""
    parser = job_parser("Validate one dataset's landed files: staging, quarantine and batch ledger.")
    parser.add_argument("--dataset", required=True, help="dataset name as declared in the workspace")
    run_job(parser, argv, lambda args: StepKey(STEP, args.dataset),
            lambda spark, ws, ctx, args: run(spark, ws, ctx, args.dataset))


if __name__ == "__main__":
    main()
