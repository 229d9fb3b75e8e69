"""Ingest one dataset's validated batch into its Delta table (step ``ingest``).

Reads the run date's slice of ``staging/<dataset>`` (written by validate) and MERGEs it into
``datasets/<dataset>``:

* profile records: one row per primary identity value. The batch is first reduced to the newest
  record per identity; a stored row is replaced when the incoming one is not older, comparing
  (_record_ts, _batch_date, _source_file, _row_number) in that order. A late-arriving older
  record therefore never overwrites a newer one.
* events: one row per event id. A new id is inserted. An id already stored is left alone, unless
  the incoming occurrence comes from an *earlier* (batch date, file, row): then it replaces the
  stored one, so that backfilling an earlier day gives the same table as loading days in order.

Both rules pick, for each key, the extreme of a total order over everything ever staged, so the
table does not depend on the order in which days are ingested, and re-running a day is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.datasets import EVENT_ORDER, PROFILE_ORDER, merge_key, transform_first_per_key, transform_latest_per_key
from cdp.delta_io import read_table, record_metrics, retry_on_conflict, table_exists
from cdp.errors import CdpError
from cdp.lake import DATASET, STAGING
from cdp.run_context import RunContext, job_parser, parse_job_args
from cdp.schemas import BATCH_DATE
from cdp.spark import get_session
from cdp.workspace.loader import Workspace

log = logging.getLogger(__name__)

STEP = "ingest"

def _order_struct(alias: str, columns: Sequence[str]) -> str:
    return "struct(" + ", ".join(f"{alias}.`{c}`" for c in columns) + ")"


@retry_on_conflict
def merge_batch(spark: SparkSession, path: str, batch: DataFrame, key: str, class_: str) -> None:
    """MERGE a deduplicated batch into the dataset table at ``path``, creating it on first use."""
    # createIfNotExists: two attempts racing to create the table do not fail each other.
    DeltaTable.createIfNotExists(spark).location(path).addColumns(batch.schema).execute()
    target = DeltaTable.forPath(spark, path)
    if class_ == "profile":
        # Greater-or-equal: re-running a day rewrites identical rows; an older record never wins.
        wins = f"{_order_struct('s', PROFILE_ORDER)} >= {_order_struct('t', PROFILE_ORDER)}"
    else:
        # Strictly earlier: re-running a day changes nothing; a backfilled earlier occurrence wins.
        wins = f"{_order_struct('s', EVENT_ORDER)} < {_order_struct('t', EVENT_ORDER)}"
    (target.alias("t")
     .merge(batch.alias("s"), f"t.`{key}` = s.`{key}`")
     # A field added to the schema (additive evolution) becomes a new column of the table.
     .withSchemaEvolution()
     .whenMatchedUpdateAll(condition=wins)
     .whenNotMatchedInsertAll()
     .execute())


def last_merge_counts(spark: SparkSession, path: str) -> tuple[int, int]:
    """(inserted, updated) as reported by the table's latest commit, when that commit is a MERGE."""
    last = DeltaTable.forPath(spark, path).history(1).select("operation", "operationMetrics").first()
    if last is None or last["operation"] != "MERGE":
        return 0, 0
    metrics = last["operationMetrics"] or {}
    return int(metrics.get("numTargetRowsInserted", 0)), int(metrics.get("numTargetRowsUpdated", 0))


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, dataset: str) -> dict[str, int]:
    """MERGE the staging slice of ``ctx.run_date`` into ``datasets/<dataset>``; return the counts."""
    if dataset not in ws.datasets:
        raise CdpError(f"dataset '{dataset}' is not defined in workspace {ws.config.name} "
                       f"(datasets: {', '.join(sorted(ws.datasets))})")
    schema = ws.schema_of(dataset)
    key = merge_key(schema)
    staging_path = ctx.lake.path(STAGING, dataset)
    table_path = ctx.lake.path(DATASET, dataset)
    metrics = {"rows_staged": 0, "rows_inserted": 0, "rows_updated": 0, "rows_total": 0}

    staged = None
    if table_exists(spark, staging_path):
        staged = read_table(spark, staging_path).where(F.col(BATCH_DATE) == F.lit(ctx.run_date))
        metrics["rows_staged"] = staged.count()
    if staged is None or metrics["rows_staged"] == 0:
        # Nothing landed, the batch was rejected, or validate has not run: nothing to ingest.
        log.warning("dataset %s: no staged rows for %s in %s: nothing to ingest", dataset, ctx.run_date,
                    staging_path)
    else:
        dedupe = transform_latest_per_key if schema.class_ == "profile" else transform_first_per_key
        merge_batch(spark, table_path, dedupe(staged, key), key, schema.class_)
        metrics["rows_inserted"], metrics["rows_updated"] = last_merge_counts(spark, table_path)
    if table_exists(spark, table_path):
        metrics["rows_total"] = read_table(spark, table_path).count()
    log.info("dataset %s, %s: %d staged, %d inserted, %d updated, %d in table", dataset, ctx.run_date,
             metrics["rows_staged"], metrics["rows_inserted"], metrics["rows_updated"], metrics["rows_total"])
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: ingest one dataset's validated batch for one run date."""
    parser = job_parser("Ingest one dataset's validated batch into its Delta table (MERGE).")
    parser.add_argument("--dataset", required=True, help="dataset name as declared in the workspace")
    args, ctx, ws = parse_job_args(parser, argv)
    spark = get_session(f"cdp-{STEP}-{args.dataset}")
    metrics = run(spark, ws, ctx, args.dataset)
    record_metrics(spark, ctx.lake, ctx.run_date, STEP, args.dataset, metrics)


if __name__ == "__main__":
    main()
