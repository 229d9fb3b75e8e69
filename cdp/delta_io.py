"""Reading and writing Delta tables: the few write patterns every job uses.

Everything here is Spark SQL or the DataFrame API (``MERGE INTO``, ``UPDATE``, ``DESCRIBE DETAIL / HISTORY``,
``replaceWhere`` writes), never Delta's Python ``DeltaTable`` API: the jobs run as Spark Connect clients
(:mod:`cdp.spark_connect`), where ``DeltaTable`` needs Delta's Connect server plugin, which is not published
for Spark 4.1; the same statements run unchanged in a classic session (the tests, spark-submit mode).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

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
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from cdp import lake_files
from cdp.lake import Lake, TableSpec

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


# What DESCRIBE DETAIL raises for a path that holds no Delta table (absent, empty, or another format).
NOT_A_DELTA_TABLE = {"DELTA_MISSING_DELTA_TABLE", "DELTA_PATH_DOES_NOT_EXIST", "PATH_NOT_FOUND",
                     "DELTA_TABLE_NOT_FOUND", "DELTA_NOT_A_DELTA_TABLE"}


def table_ref(path: str) -> str:
    """The SQL identifier of the Delta table at ``path`` (``delta.`<path>```)."""
    return "delta.`" + path.replace("`", "``") + "`"


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_detail(spark: SparkSession, path: str) -> Row | None:
    """The ``DESCRIBE DETAIL`` row of the Delta table at ``path`` (None when there is none)."""
    try:
        return spark.sql(f"DESCRIBE DETAIL {table_ref(path)}").first()
    except AnalysisException as exc:
        if (exc.getCondition() or "") in NOT_A_DELTA_TABLE:
            return None
        raise


# A commit or a checkpoint in a table's _delta_log (00000000000000000042.json, ....checkpoint.parquet,
# multi-part and V2 checkpoints): the log of a table that exists holds at least one.
_LOG_ENTRY = re.compile(r"^\d{20}\.(json|checkpoint(\.\d+\.\d+)?\.parquet|checkpoint\.[0-9a-f-]+\.(json|parquet))$")


def table_exists(spark: SparkSession, path: str) -> bool:
    """Whether a Delta table is at ``path``: its ``_delta_log`` holds a commit or a checkpoint.

    Read from the file system for a local or S3 lake (one listing), since ``DESCRIBE DETAIL`` builds the table's
    snapshot and its file statistics, seconds on a cold JVM, and every read of a table asks this first; other
    file systems ask Delta.
    """
    if lake_files.is_local(path) or lake_files.is_s3(path):
        return any(_LOG_ENTRY.match(name) for name in lake_files.list_names(f"{path.rstrip('/')}/_delta_log"))
    return table_detail(spark, path) is not None


def last_commit(spark: SparkSession, path: str) -> Row | None:
    """The latest commit of the table (``DESCRIBE HISTORY``): operation, operationMetrics, version..."""
    return spark.sql(f"DESCRIBE HISTORY {table_ref(path)} LIMIT 1").first()


def ddl_type(data_type: T.DataType) -> str:
    """The SQL DDL of a type, nested NOT NULL fields included (an array's element nullability cannot be said)."""
    if isinstance(data_type, T.StructType):
        return "STRUCT<" + ", ".join(
            f"`{f.name}`: {ddl_type(f.dataType)}{'' if f.nullable else ' NOT NULL'}" for f in data_type.fields) + ">"
    if isinstance(data_type, T.ArrayType):
        return f"ARRAY<{ddl_type(data_type.elementType)}>"
    if isinstance(data_type, T.MapType):
        return f"MAP<{ddl_type(data_type.keyType)}, {ddl_type(data_type.valueType)}>"
    return data_type.simpleString()


def ddl_columns(schema: T.StructType) -> str:
    """The column list of a ``CREATE TABLE`` for ``schema``."""
    return ", ".join(f"`{f.name}` {ddl_type(f.dataType)}{'' if f.nullable else ' NOT NULL'}" for f in schema.fields)


@retry_on_conflict
def create_table(spark: SparkSession, path: str, schema: T.StructType, partition_by: list[str] | None = None,
                 properties: Mapping[str, str] | None = None) -> None:
    """``CREATE TABLE IF NOT EXISTS`` at ``path``: two tasks racing to create it do not fail each other."""
    statement = f"CREATE TABLE IF NOT EXISTS {table_ref(path)} ({ddl_columns(schema)}) USING DELTA"
    if partition_by:
        statement += " PARTITIONED BY (" + ", ".join(f"`{c}`" for c in partition_by) + ")"
    if properties:
        statement += " TBLPROPERTIES (" + ", ".join(f"{k} = {sql_string(v)}" for k, v in properties.items()) + ")"
    spark.sql(statement)


@contextmanager
def temp_view(df: DataFrame) -> Iterator[str]:
    """``df`` as a temp view of a unique name for one statement, dropped after it (no state is left behind)."""
    name = f"cdp_source_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(name)
    try:
        yield name
    finally:
        df.sparkSession.catalog.dropTempView(name)


def update_table(spark: SparkSession, path: str, condition: str, assignments: Mapping[str, str]) -> None:
    """``UPDATE`` the rows of ``condition``: ``assignments`` maps a column to a SQL expression."""
    values = ", ".join(f"`{column}` = {expression}" for column, expression in assignments.items())
    spark.sql(f"UPDATE {table_ref(path)} SET {values} WHERE {condition}")


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
        create_table(spark, path, schema, partition_by)


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


def latest_partition_before(df: DataFrame, column: str, day: dt.date) -> dt.date | None:
    """The newest value of a date partition column strictly before ``day`` (None if none)."""
    row = df.where(F.col(column) < F.lit(day)).agg(F.max(column).alias("d")).first()
    return None if row is None else row["d"]
