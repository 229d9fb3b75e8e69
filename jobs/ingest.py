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

Re-running a day whose files changed (a bad file fixed or removed, then the day validated again):
the table must hold what it would if only the new files had ever been loaded for that day. When
the table already holds rows of the run date's batch, the keys of those rows and of the new slice
are re-decided from the whole staging history (which validate replaces per batch date) with the
same rules, in one MERGE that updates, inserts, and deletes the keys no staged record holds any
more. The plain MERGE stays the path of a day's first ingestion.

Once the rows are in the table, the run date's staged files are marked ``ingested`` in the batch
ledger: only then is a re-delivery of the same content refused as a duplicate file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.datasets import EVENT_ORDER, PROFILE_ORDER, merge_key, transform_first_per_key, transform_latest_per_key
from cdp.delta_io import create_table, last_commit, read_table, retry_on_conflict, table_exists, table_ref, temp_view
from cdp.errors import CdpError
from cdp.ingestion.ledger import mark_ingested
from cdp.job import StepKey, run_job
from cdp.lake import DATASET, STAGING
from cdp.run_context import RunContext, job_parser
from cdp.schemas import BATCH_DATE, SOURCE_FILE
from cdp.workspace.loader import Workspace

log = logging.getLogger(__name__)

STEP = "ingest"

def _order_struct(alias: str, columns: Sequence[str]) -> str:
    return "struct(" + ", ".join(f"{alias}.`{c}`" for c in columns) + ")"


@retry_on_conflict
def merge_batch(spark: SparkSession, path: str, batch: DataFrame, key: str, class_: str) -> None:
    """MERGE a deduplicated batch into the dataset table at ``path``, creating it on first use."""
    # IF NOT EXISTS: two attempts racing to create the table do not fail each other.
    create_table(spark, path, batch.schema)
    if class_ == "profile":
        # Greater-or-equal: re-running a day rewrites identical rows; an older record never wins.
        wins = f"{_order_struct('s', PROFILE_ORDER)} >= {_order_struct('t', PROFILE_ORDER)}"
    else:
        # Strictly earlier: re-running a day changes nothing; a backfilled earlier occurrence wins.
        wins = f"{_order_struct('s', EVENT_ORDER)} < {_order_struct('t', EVENT_ORDER)}"
    with temp_view(batch) as source:
        # WITH SCHEMA EVOLUTION: a field added to the schema (additive evolution) becomes a new column.
        spark.sql(f"MERGE WITH SCHEMA EVOLUTION INTO {table_ref(path)} AS t USING {source} AS s "
                  f"ON t.`{key}` = s.`{key}` "
                  f"WHEN MATCHED AND {wins} THEN UPDATE SET * "
                  "WHEN NOT MATCHED THEN INSERT *")


def add_missing_columns(spark: SparkSession, path: str, batch: DataFrame) -> None:
    """Add the batch's columns the table lacks (a field added to the schema) before an explicit MERGE."""
    present = set(read_table(spark, path).columns)
    missing = [f for f in batch.schema.fields if f.name not in present]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")


@retry_on_conflict
def remerge_keys(spark: SparkSession, path: str, decided: DataFrame, key: str) -> None:
    """MERGE the re-decided rows of some keys: ``decided`` has every affected key, with ``_gone`` true (and
    null values) for a key no staged record holds any more, which is deleted."""
    columns = [c for c in decided.columns if c != "_gone"]
    add_missing_columns(spark, path, decided.drop("_gone"))
    names = ", ".join(f"`{c}`" for c in columns)
    values = ", ".join(f"s.`{c}`" for c in columns)
    # Only rows that differ are rewritten: re-running an unchanged day changes nothing.
    unchanged = " AND ".join(f"t.`{c}` <=> s.`{c}`" for c in columns)
    with temp_view(decided) as source:
        spark.sql(f"MERGE INTO {table_ref(path)} AS t USING {source} AS s ON t.`{key}` = s.`{key}` "
                  "WHEN MATCHED AND s._gone THEN DELETE "
                  f"WHEN MATCHED AND NOT ({unchanged}) THEN UPDATE SET "
                  + ", ".join(f"`{c}` = s.`{c}`" for c in columns)
                  + f" WHEN NOT MATCHED AND NOT s._gone THEN INSERT ({names}) VALUES ({values})")


def transform_redecided(history: DataFrame, affected: DataFrame, key: str, class_: str) -> DataFrame:
    """For each key of ``affected`` (one column ``key``), the row the rules keep from the staging ``history``,
    or a row with ``_gone`` true (values null) when no staged record holds the key any more."""
    dedupe = transform_latest_per_key if class_ == "profile" else transform_first_per_key
    winners = dedupe(history.join(affected, key, "left_semi"), key)
    return (affected.join(winners, key, "left")
            .withColumn("_gone", F.col(SOURCE_FILE).isNull())
            .select(*history.columns, "_gone"))


def last_merge_counts(spark: SparkSession, path: str, deleted: bool = False) -> tuple[int, int, int]:
    """(inserted, updated, deleted) as reported by the table's latest commit, when that commit is a MERGE."""
    last = last_commit(spark, path)
    if last is None or last["operation"] != "MERGE":
        return 0, 0, 0
    metrics = last["operationMetrics"] or {}
    return (int(metrics.get("numTargetRowsInserted", 0)), int(metrics.get("numTargetRowsUpdated", 0)),
            int(metrics.get("numTargetRowsDeleted", 0)) if deleted else 0)


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, dataset: str) -> dict[str, int]:
    """MERGE the staging slice of ``ctx.run_date`` into ``datasets/<dataset>``; return the counts."""
    if dataset not in ws.datasets:
        raise CdpError(f"dataset '{dataset}' is not defined in workspace {ws.config.name} "
                       f"(datasets: {', '.join(sorted(ws.datasets))})")
    schema = ws.schema_of(dataset)
    key = merge_key(schema)
    staging_path = ctx.lake.path(STAGING, dataset)
    table_path = ctx.lake.path(DATASET, dataset)
    metrics = {"rows_staged": 0, "rows_inserted": 0, "rows_updated": 0, "rows_deleted": 0, "rows_total": 0}

    staged = None
    if table_exists(spark, staging_path):
        staged = read_table(spark, staging_path).where(F.col(BATCH_DATE) == F.lit(ctx.run_date))
        metrics["rows_staged"] = staged.count()
    if staged is None or metrics["rows_staged"] == 0:
        # Nothing landed, the batch was rejected, or validate has not run: nothing new to ingest.
        log.warning("dataset %s: no staged rows for %s in %s: nothing to ingest", dataset, ctx.run_date,
                    staging_path)
    earlier = (read_table(spark, table_path).where(F.col(BATCH_DATE) == F.lit(ctx.run_date))
               if table_exists(spark, table_path) else None)
    if earlier is not None and earlier.limit(1).count() > 0:
        # An earlier attempt loaded this batch date: re-decide its keys and the new ones from all that is staged.
        assert staged is not None
        affected = earlier.select(key).unionByName(staged.select(key)).where(F.col(key).isNotNull()).distinct()
        history = read_table(spark, staging_path)
        log.info("dataset %s: the table already holds rows of the batch of %s: re-deciding their keys from the "
                 "staging history", dataset, ctx.run_date)
        remerge_keys(spark, table_path, transform_redecided(history, affected, key, schema.class_), key)
        metrics["rows_inserted"], metrics["rows_updated"], metrics["rows_deleted"] = last_merge_counts(
            spark, table_path, deleted=True)
    elif staged is not None and metrics["rows_staged"] > 0:
        dedupe = transform_latest_per_key if schema.class_ == "profile" else transform_first_per_key
        merge_batch(spark, table_path, dedupe(staged, key), key, schema.class_)
        metrics["rows_inserted"], metrics["rows_updated"], _ = last_merge_counts(spark, table_path)
    metrics["files_ingested"] = mark_ingested(ctx.lake, dataset, ctx.run_date)
    if table_exists(spark, table_path):
        metrics["rows_total"] = read_table(spark, table_path).count()
    log.info("dataset %s, %s: %d staged, %d inserted, %d updated, %d in table", dataset, ctx.run_date,
             metrics["rows_staged"], metrics["rows_inserted"], metrics["rows_updated"], metrics["rows_total"])
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: ingest one dataset's validated batch for one run date."""
    parser = job_parser("Ingest one dataset's validated batch into its Delta table (MERGE).")
    parser.add_argument("--dataset", required=True, help="dataset name as declared in the workspace")
    run_job(parser, argv, lambda args: StepKey(STEP, args.dataset),
            lambda spark, ws, ctx, args: run(spark, ws, ctx, args.dataset),
            requires=lambda args, _ws: [StepKey("validate", args.dataset)])


if __name__ == "__main__":
    main()
