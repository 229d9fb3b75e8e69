"""The delivery ledger of the streaming destinations, its acknowledgement journal and the failed records.

- ``delivery_ledger`` (:data:`cdp.lake.DELIVERY_LEDGER`): one row per message acknowledged (or excluded, or
  given up), unique on (destination, run_date, message_id): a run appends only the message ids no earlier
  attempt of its day recorded, and the journal of a killed attempt is MERGEd. The latest row of each profile
  before a run date is the state that run's changes are computed from; the rows of the run date itself are
  what an earlier, killed attempt already delivered (not sent again).
- the journal: executors append each acknowledged batch to JSON-lines files under the lake
  (``_stream_journal/<destination>/<run date>/``) before sending the next batch; the driver folds them into
  the ledger when the send is over, and at the start of the next attempt when a task was killed.
- ``delivery_failures`` (:data:`cdp.lake.DELIVERY_FAILURES`): the run date's messages that were not
  delivered, with their error class, status and the endpoint's (truncated, masked) answer.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
import shutil

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.delta_io import create_table_if_absent, read_table, replace_slice, retry_on_conflict, table_ref, temp_view
from cdp.destinations.streaming.changes import ACKNOWLEDGED_STATE
from cdp.lake import DELIVERY_FAILURES, DELIVERY_LEDGER, Lake, date_literal

log = logging.getLogger(__name__)

DELIVERED = "delivered"
EXCLUDED = "excluded"
GIVEN_UP = "given_up"
FAILED = "failed"
# One line of the acknowledgement journal (memberships: audience -> ISO time, as JSON writes it).
JOURNAL_SCHEMA = T.StructType([
    T.StructField("message_id", T.StringType(), False),
    T.StructField("profile_id", T.StringType(), False),
    T.StructField("signature", T.StringType(), False),
    T.StructField("state_json", T.StringType(), True),
    T.StructField("memberships", T.MapType(T.StringType(), T.StringType()), True),
    T.StructField("bytes", T.LongType(), False),
    T.StructField("acknowledged_at", T.DoubleType(), False),
    T.StructField("run_id", T.StringType(), True),
])


def _slice(destination: str, run_date: dt.date) -> str:
    return f"destination = '{destination}' AND run_date = {date_literal(run_date)}"


def journal_folder(lake: Lake, destination: str, run_date: dt.date) -> str | None:
    """Where executors journal acknowledgements: under the lake when it is a local folder (executors and
    driver share it), else None (an object store cannot append; see :class:`~.delivery.Journal`)."""
    root = lake.root.removeprefix("file://") if lake.root.startswith("file://") else lake.root
    if "://" in root:
        return None
    return os.path.join(root, "_stream_journal", destination, run_date.isoformat())


def history(spark: SparkSession, lake: Lake, destination: str) -> DataFrame:
    """Every ledger row of one destination."""
    assert DELIVERY_LEDGER.schema is not None
    return read_table(spark, lake.path(DELIVERY_LEDGER), DELIVERY_LEDGER.schema).where(
        F.col("destination") == destination)


def acknowledged_state(rows: DataFrame, run_date: dt.date) -> DataFrame:
    """The latest ledger row of each profile before ``run_date`` (:data:`ACKNOWLEDGED_STATE` columns, and
    ``last_run_date``: the run date of that row)."""
    latest = Window.partitionBy("profile_id").orderBy(
        F.col("run_date").desc(), F.col("acknowledged_at").desc_nulls_last(), F.col("message_id"))
    before = rows.where(F.col("run_date") < F.lit(run_date)).withColumn("__n", F.row_number().over(latest))
    return before.where(F.col("__n") == 1).select(*[f.name for f in ACKNOWLEDGED_STATE.fields],
                                                  F.col("run_date").alias("last_run_date"))


@retry_on_conflict
def merge(spark: SparkSession, lake: Lake, rows: DataFrame) -> None:
    """Insert (or replace) ledger rows by (destination, run_date, message_id)."""
    assert DELIVERY_LEDGER.schema is not None
    if rows.isEmpty():
        return  # a MERGE of nothing still costs a Delta commit
    path = lake.path(DELIVERY_LEDGER)
    create_table_if_absent(spark, path, DELIVERY_LEDGER.schema, DELIVERY_LEDGER.partition_by)
    conformed = rows.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in DELIVERY_LEDGER.schema.fields])
    with temp_view(conformed) as source:
        spark.sql(f"MERGE INTO {table_ref(path)} AS t USING {source} AS s ON t.destination = s.destination "
                  "AND t.run_date = s.run_date AND t.message_id = s.message_id "
                  "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")


@retry_on_conflict
def append(spark: SparkSession, lake: Lake, rows: DataFrame) -> None:
    """Append ledger rows whose (destination, run_date, message_id) the ledger does not hold: the messages of a
    run that no earlier attempt of its day recorded (a blind append, cheaper than :func:`merge`'s join). The caller
    leaves out an empty ``rows``: an append of nothing still costs a Delta commit."""
    assert DELIVERY_LEDGER.schema is not None
    conformed = rows.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in DELIVERY_LEDGER.schema.fields])
    path = lake.path(DELIVERY_LEDGER)
    create_table_if_absent(spark, path, DELIVERY_LEDGER.schema, DELIVERY_LEDGER.partition_by)
    conformed.write.format("delta").mode("append").save(path)


def fold_journal(spark: SparkSession, lake: Lake, destination: str, run_date: dt.date) -> int:
    """Move what the executors journalled into the ledger and remove the journal; the number of messages."""
    folder = journal_folder(lake, destination, run_date)
    if folder is None or not glob.glob(os.path.join(folder, "*.jsonl")):
        return 0
    lines = spark.read.schema(JOURNAL_SCHEMA).json(os.path.join(folder, "*.jsonl"))
    rows = lines.select(
        F.lit(destination).alias("destination"), F.lit(run_date).alias("run_date"), "message_id", "profile_id",
        F.lit(DELIVERED).alias("status"), "signature", "state_json",
        F.transform_values("memberships", lambda _k, v: F.to_timestamp(v)).alias("memberships"), "bytes",
        "run_id", F.timestamp_seconds("acknowledged_at").alias("acknowledged_at"))
    # A message can be journalled twice (a batch retried after its journal write); keep its first acknowledgement.
    first = Window.partitionBy("message_id").orderBy("acknowledged_at")
    rows = rows.withColumn("__n", F.row_number().over(first)).where(F.col("__n") == 1).drop("__n").persist()
    try:
        count = rows.count()
        merge(spark, lake, rows)
    finally:
        rows.unpersist()
    shutil.rmtree(folder, ignore_errors=True)
    log.info("destination %s: %d acknowledgement(s) of an earlier attempt recorded in the delivery ledger",
             destination, count)
    return count


def remove_journal(lake: Lake, destination: str, run_date: dt.date) -> None:
    folder = journal_folder(lake, destination, run_date)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def failures_before(spark: SparkSession, lake: Lake, destination: str, run_date: dt.date) -> DataFrame:
    """The failed (not given up) records of earlier run dates: profile_id, first_failed_run_date, run_date."""
    assert DELIVERY_FAILURES.schema is not None
    return read_table(spark, lake.path(DELIVERY_FAILURES), DELIVERY_FAILURES.schema).where(
        (F.col("destination") == destination) & (F.col("run_date") < F.lit(run_date)) & (F.col("status") == FAILED)
    ).select("profile_id", "first_failed_run_date", F.col("run_date").alias("failed_run_date"))


def record_failures(spark: SparkSession, lake: Lake, destination: str, run_date: dt.date, rows: DataFrame) -> None:
    """Replace the run date's failed records of the destination."""
    assert DELIVERY_FAILURES.schema is not None
    conformed = rows.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in DELIVERY_FAILURES.schema.fields])
    replace_slice(conformed, lake.path(DELIVERY_FAILURES), _slice(destination, run_date),
                  DELIVERY_FAILURES.partition_by)
