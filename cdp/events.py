"""Experience events linked to profiles: what audience evaluation and the profiles' event counters read.

Events are read from the event datasets' Delta tables as they had landed by the run date
(``_batch_date <= D``), within a window of event days ending on the run date, and attached to a
profile through their primary identity and the identity map of the run date.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Iterable, Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.audiences import PROFILE_ID, field_column
from cdp.delta_io import read_table, table_exists
from cdp.identities import normalize
from cdp.lake import DATASET, Lake
from cdp.schemas import BATCH_DATE, spark_type
from cdp.workspace.loader import Workspace
from cdp.workspace.models import SchemaSpec

log = logging.getLogger(__name__)


def transform_events(raw: DataFrame, identity_map: DataFrame, dataset: str, schema: SchemaSpec, namespace: str,
                     namespace_type: str, run_date: dt.date, lookback_days: int | None,
                     event_types: Sequence[str] | None = None,
                     fields: Mapping[str, T.DataType] | None = None,
                     fallbacks: Sequence[tuple[str, str, str, str | None]] = ()) -> DataFrame:
    """One event dataset's events of the lookback window, linked to profiles.

    ``raw`` is the dataset's table, ``identity_map`` the identity map of the run date. Keeps what had
    landed by the run date with an event day in [run_date - lookback_days + 1, run_date] (no lower
    bound when ``lookback_days`` is None) and, when given, only the event types some rule counts;
    returns (profile_id, dataset, event_type, event_date, event_time) then ``field_<name>`` for each of ``fields``
    (null, of the given type, where this dataset's schema lacks the field).
    Events whose identity is not in the map belong to no profile and are dropped.

    An event is linked through its primary identity; when validation dropped that value (blocked, not of
    the namespace's pattern) it is linked through the first of ``fallbacks`` (field, namespace, namespace
    type, default region) that has a value: resolution put all of a record's identities in one profile.
    """
    assert schema.timestamp_field and schema.event_type_field and schema.primary_identity
    timestamp = F.col(schema.timestamp_field)
    # The bounds on the raw timestamp let Delta skip files by their statistics; the day test decides.
    until = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    in_range = (F.col(BATCH_DATE) <= F.lit(run_date)) & (timestamp < F.lit(until))
    event_date = F.to_date(timestamp)
    in_days = event_date <= F.lit(run_date)
    if lookback_days is not None:
        first = run_date - dt.timedelta(days=lookback_days - 1)
        since = dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC)
        in_range = in_range & (timestamp >= F.lit(since))
        in_days = in_days & (event_date >= F.lit(first))
    extra = [(F.col(name) if schema.field(name) is not None else F.lit(None)).cast(dtype).alias(field_column(name))
             for name, dtype in sorted((fields or {}).items())]
    linked_namespace: Column = F.lit(namespace)
    linked_value = normalize(namespace_type, F.col(schema.primary_identity.name))
    for field, other, other_type, region in reversed(fallbacks):
        # Built inside out: the primary, else the first fallback with a value, else the next...
        other_value = normalize(other_type, F.col(field), region)
        linked_namespace = F.when(linked_value.isNull() & other_value.isNotNull(), F.lit(other)).otherwise(
            linked_namespace)
        linked_value = F.coalesce(linked_value, other_value)
    events = raw.where(in_range & in_days).select(
        linked_namespace.alias("namespace"),
        linked_value.alias("value"),
        F.col(schema.event_type_field).alias("event_type"),
        event_date.alias("event_date"),
        timestamp.alias("event_time"),
        *extra,
    ).where(F.col("value").isNotNull())
    if event_types is not None:
        events = events.where(F.col("event_type").isin(*sorted(set(event_types))))
    profiles_of = identity_map.select("namespace", "value", PROFILE_ID)
    return events.join(profiles_of, ["namespace", "value"], "inner").select(
        PROFILE_ID, F.lit(dataset).alias("dataset"), "event_type", "event_date", "event_time",
        *[field_column(name) for name in sorted(fields or {})])


def event_field_types(ws: Workspace, names: Iterable[str]) -> dict[str, T.DataType]:
    """The Spark type of each named event field: its declaration in the first event schema declaring it."""
    out: dict[str, T.DataType] = {}
    for name in sorted(names):
        for dataset in ws.event_datasets:
            declared = ws.schema_of(dataset.name).field(name)
            if declared is not None:
                out[name] = spark_type(declared)
                break
        else:
            out[name] = T.StringType()  # declared nowhere: the loader refuses such a rule
    return out


def empty_events(spark: SparkSession, fields: Mapping[str, T.DataType]) -> DataFrame:
    """An events frame without rows, with the columns transform_events yields."""
    schema = T.StructType([T.StructField(PROFILE_ID, T.StringType()), T.StructField("dataset", T.StringType()),
                           T.StructField("event_type", T.StringType()), T.StructField("event_date", T.DateType()),
                           T.StructField("event_time", T.TimestampType()),
                           *[T.StructField(field_column(n), t) for n, t in sorted(fields.items())]])
    return spark.createDataFrame([], schema)


def read_events(spark: SparkSession, ws: Workspace, lake: Lake, run_date: dt.date, identity_map: DataFrame,
                first_day: dt.date | None, event_types: Mapping[str, Sequence[str]] | None = None,
                fields: Mapping[str, T.DataType] | None = None) -> DataFrame | None:
    """The union of the event datasets' events with a day in [first_day, run_date] (None: no lower bound),
    linked to profiles by ``identity_map`` (the run date's); None when there is nothing to read.

    ``event_types`` maps a dataset to the types to keep (a dataset absent from it is not read); None
    keeps every event of every event dataset feeding profiles. ``fields`` as in :func:`transform_events`.
    """
    lookback = (run_date - first_day).days + 1 if first_day is not None else None
    frames: list[DataFrame] = []
    for dataset in ws.event_datasets:
        types = event_types.get(dataset.name) if event_types is not None else None
        if event_types is not None and not types:
            continue  # nothing of this dataset is counted
        schema = ws.schema_of(dataset.name)
        primary = schema.primary_identity
        if primary is None or primary.identity is None:
            log.warning("event dataset %s has no primary identity: its events cannot count for audiences",
                        dataset.name)
            continue
        path = lake.path(DATASET, dataset.name)
        if not table_exists(spark, path):
            log.warning("event dataset %s has no table yet at %s: its events count 0", dataset.name, path)
            continue
        namespace = primary.identity.namespace
        fallbacks = [(f.name, f.identity.namespace, ws.namespaces[f.identity.namespace].type,
                      ws.namespaces[f.identity.namespace].default_region)
                     for f in schema.identity_fields if f.identity is not None and not f.identity.primary]
        frames.append(transform_events(
            read_table(spark, path), identity_map, dataset.name, schema, namespace, ws.namespaces[namespace].type,
            run_date, lookback, sorted(types) if types is not None else None, fields, fallbacks))
    return functools.reduce(DataFrame.unionByName, frames) if frames else None
