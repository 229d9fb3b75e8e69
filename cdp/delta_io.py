"""Reading and writing Delta tables: the few write patterns every job uses."""

from __future__ import annotations

import datetime as dt
import logging

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from cdp.lake import RUN_METRICS, Lake, TableSpec, date_literal

log = logging.getLogger(__name__)

# Parallel tasks of one run write disjoint slices of shared tables (quarantine, run_metrics, ...).
# Delta detects a conflict when two commits race (notably when both create the table): the loser
# retries its whole write, which is safe because every write replaces its own slice.
CONCURRENT_COMMIT_ERRORS = (
    DeltaConcurrentModificationException, ConcurrentWriteException, MetadataChangedException,
    ProtocolChangedException, ConcurrentAppendException, ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException, ConcurrentTransactionException,
)
retry_on_conflict = retry(
    retry=retry_if_exception_type(CONCURRENT_COMMIT_ERRORS),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.5, max=10),
    reraise=True,
)


def table_exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def read_table(spark: SparkSession, path: str, schema: T.StructType | None = None) -> DataFrame:
    """Read a Delta table; an absent table reads as empty with ``schema`` when one is given."""
    if table_exists(spark, path):
        return spark.read.format("delta").load(path)
    if schema is None:
        raise FileNotFoundError(f"Delta table {path} does not exist yet")
    return spark.createDataFrame([], schema)


def read_run_date_slice(spark: SparkSession, lake: Lake, table: TableSpec, run_date: dt.date,
                        absent_as_empty: bool = False) -> DataFrame:
    """The ``run_date`` rows of a run-date-keyed table; an absent table reads as empty when ``absent_as_empty``
    (it needs a declared schema), else raises FileNotFoundError."""
    schema = table.schema if absent_as_empty else None
    return read_table(spark, lake.path(table), schema).where(F.col("run_date") == F.lit(run_date))


def create_table_if_absent(spark: SparkSession, path: str, schema: T.StructType, partition_by: list[str]) -> None:
    """Create an empty Delta table from a declared schema, so that its NOT NULL columns are enforced."""
    if not table_exists(spark, path):
        DeltaTable.createIfNotExists(spark).location(path).addColumns(schema).partitionedBy(*partition_by).execute()


@retry_on_conflict
def replace_slice(df: DataFrame, path: str, predicate: str, partition_by: list[str] | None = None,
                  add_new_columns: bool = False) -> None:
    """Overwrite exactly the rows matching ``predicate`` with ``df`` (idempotent per run).

    ``add_new_columns`` allows additive schema evolution (a column added to a declared schema).
    """
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if add_new_columns:
        writer = writer.option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)
    log.info("replaced %s where %s", path, predicate)


def record_metrics(spark: SparkSession, lake: Lake, run_date: dt.date, step: str, scope: str,
                   metrics: dict[str, int]) -> None:
    """Write this step's counts for the run date, replacing what an earlier attempt wrote."""
    rows = [(run_date, step, scope, name, int(value)) for name, value in sorted(metrics.items())]
    df = spark.createDataFrame(rows, RUN_METRICS.schema)
    predicate = (f"run_date = {date_literal(run_date)} AND step = '{step}' AND scope = '{scope}'")
    replace_slice(df, lake.path(RUN_METRICS), predicate, RUN_METRICS.partition_by)
    log.info("%s[%s] %s", step, scope, ", ".join(f"{k}={v}" for k, v in sorted(metrics.items())))


def latest_partition_before(df: DataFrame, column: str, day: dt.date) -> dt.date | None:
    """The newest value of a date partition column strictly before ``day`` (None if none)."""
    row = df.where(F.col(column) < F.lit(day)).agg(F.max(column).alias("d")).first()
    return None if row is None else row["d"]
