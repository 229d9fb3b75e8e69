"""Dataset tables: what each is keyed on, which record of a key is kept, and the view as of a run date.

Ingest applies these rules when it MERGEs a batch; every later step reads a dataset through
:func:`read_dataset_as_of`, so a backfill of a past day sees that day's records.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp.delta_io import read_table, table_exists
from cdp.errors import CdpError
from cdp.lake import DATASET, STAGING, Lake
from cdp.schemas import BATCH_DATE, RECORD_TS, ROW_NUMBER, SOURCE_FILE, dataset_struct
from cdp.workspace.loader import Workspace
from cdp.workspace.models import SchemaSpec

# The order that decides which record of a key is kept (profiles: the greatest wins).
PROFILE_ORDER = [RECORD_TS, BATCH_DATE, SOURCE_FILE, ROW_NUMBER]
# Events: the first occurrence wins (the same rule validate applies within a batch).
EVENT_ORDER = [BATCH_DATE, SOURCE_FILE, ROW_NUMBER]
# Columns of stored_event_ids.
STORED_ID = "_stored_id"
STORED_BATCH_DATE = "_stored_batch_date"


def merge_key(schema: SchemaSpec) -> str:
    """The column a dataset's table is keyed on: the primary identity (profiles) or the event id (events)."""
    if schema.class_ == "event":
        if schema.id_field is None:
            raise CdpError(f"schema {schema.name}: an event schema needs id_field to be ingested")
        return schema.id_field
    primary = schema.primary_identity
    if primary is None:
        raise CdpError(f"schema {schema.name}: a profile schema needs a primary identity to be ingested")
    return primary.name


def stored_event_ids(spark: SparkSession, lake: Lake, schema: SchemaSpec, dataset: str,
                     before: dt.date) -> DataFrame | None:
    """The event ids a dataset table holds from batches strictly before ``before``, with their batch date.

    Columns ``_stored_id`` and ``_stored_batch_date``; None for profile datasets and before the
    first ingest. Only *earlier* batches count: re-running a day must not find that day's own rows,
    and a backfill of an earlier day must still be able to claim an id a later day stored.
    """
    path = lake.path(DATASET, dataset)
    if schema.class_ != "event" or schema.id_field is None or not table_exists(spark, path):
        return None
    # The event table keeps one row per id, so no de-duplication is needed here.
    return (read_table(spark, path).where(F.col(BATCH_DATE) < F.lit(before))
            .select(F.col(schema.id_field).alias(STORED_ID), F.col(BATCH_DATE).alias(STORED_BATCH_DATE)))


def transform_latest_per_key(df: DataFrame, key: str) -> DataFrame:
    """One row per key value: the newest by (_record_ts, _batch_date, _source_file, _row_number).

    Rows without a key are dropped (validate quarantines them; this keeps MERGE from inserting
    them again on every re-run).
    """
    newest_first = Window.partitionBy(key).orderBy(*[F.col(c).desc() for c in PROFILE_ORDER])
    return (df.where(F.col(key).isNotNull())
            .withColumn("_rank", F.row_number().over(newest_first)).where(F.col("_rank") == 1).drop("_rank"))


def transform_first_per_key(df: DataFrame, key: str) -> DataFrame:
    """One row per key value: the first occurrence by (_batch_date, _source_file, _row_number)."""
    first = Window.partitionBy(key).orderBy(*[F.col(c).asc() for c in EVENT_ORDER])
    return (df.where(F.col(key).isNotNull())
            .withColumn("_rank", F.row_number().over(first)).where(F.col("_rank") == 1).drop("_rank"))


def read_dataset_as_of(spark: SparkSession, lake: Lake, ws: Workspace, dataset: str, run_date: dt.date) -> DataFrame:
    """A dataset's records as they stood after the run date's batch.

    Event tables keep each id's first occurrence, so their rows with ``_batch_date <= run_date``
    are exactly that view. Profile tables keep each key's newest record: when a later batch has
    replaced a key (a backfill of a past day), the view is rebuilt from the staging history with
    the same rule ingest applies.
    """
    schema = ws.schema_of(dataset)
    table = read_table(spark, lake.path(DATASET, dataset), dataset_struct(schema))
    as_of = table.where(F.col(BATCH_DATE) <= F.lit(run_date))
    if schema.class_ == "event" or table.where(F.col(BATCH_DATE) > F.lit(run_date)).limit(1).count() == 0:
        return as_of
    history = read_table(spark, lake.path(STAGING, dataset), dataset_struct(schema)).where(
        F.col(BATCH_DATE) <= F.lit(run_date))
    return transform_latest_per_key(history, merge_key(schema)).select(*table.columns)
