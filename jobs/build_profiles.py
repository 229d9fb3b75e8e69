"""Build profiles: merge the profile records of every identity of a profile into one row.

Each profile record (a *fragment*) is attached to its profile through its primary identity and
the identity map of the run date. Attributes are merged one by one, not record by record: for
each attribute the winning fragment is the newest one carrying a value (``timestamp_ordered``), or
the one of the most trusted dataset (``dataset_precedence``), so a null never hides a value. The
profiles table is built with the workspace's default merge policy; evaluate_audiences merges the
same fragments again (:func:`read_fragments`, :func:`merge_profiles`) for audiences naming another.

Each profile also carries the newest record time of its fragments per dataset (``dataset_last_update``)
and its number of events in the audiences' evaluation window (``events_in_window``, what the
segmentation cap ``guardrails.max_events_per_profile`` is checked against).

Writes the ``profiles`` slice of the run date. Run as ``spark-submit jobs/build_profiles.py
--run-date YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.audiences import collect_event_counters, lookback_start
from cdp.datasets import read_dataset_as_of
from cdp.delta_io import create_table_if_absent, read_table, replace_slice
from cdp.events import read_events
from cdp.identities import normalize
from cdp.job import StepKey, run_job
from cdp.lake import IDENTITY_MAP, PROFILES, date_literal
from cdp.run_context import RunContext, job_parser
from cdp.schemas import (
    BATCH_DATE,
    METADATA_FIELDS,
    RECORD_TS,
    ROW_NUMBER,
    SOURCE_FILE,
    spark_type,
)
from cdp.workspace.loader import Workspace
from cdp.workspace.models import FieldSpec, MergePolicy, SchemaSpec

log = logging.getLogger(__name__)

STEP = "build_profiles"
DATASET_COLUMN = "_dataset"
# Fragment columns before the attributes; the last four order fragments in time.
FRAGMENT_KEYS = ["profile_id", DATASET_COLUMN, RECORD_TS, BATCH_DATE, SOURCE_FILE, ROW_NUMBER]
IDENTITIES_TYPE = T.MapType(T.StringType(), T.ArrayType(T.StringType()))
LAST_UPDATE = "dataset_last_update"
LAST_UPDATE_TYPE = T.MapType(T.StringType(), T.TimestampType())
EVENTS_IN_WINDOW = "events_in_window"


def profiles_struct(attributes: Mapping[str, FieldSpec]) -> T.StructType:
    """The columns of the ``profiles`` table for a workspace's profile attributes."""
    return T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("profile_id", T.StringType(), False),
        T.StructField("identities", IDENTITIES_TYPE, False),
        T.StructField("identity_count", T.IntegerType(), False),
        # Nullable: added to tables created before these columns existed (rows written earlier read null).
        T.StructField(LAST_UPDATE, LAST_UPDATE_TYPE, True),
        T.StructField(EVENTS_IN_WINDOW, T.LongType(), True),
        *[T.StructField(name, spark_type(spec), True) for name, spec in attributes.items()],
    ])


def fragments_struct(attributes: Mapping[str, FieldSpec]) -> T.StructType:
    """The columns of :func:`transform_fragments`' result."""
    metadata = {f.name: f for f in METADATA_FIELDS}
    return T.StructType([
        T.StructField("profile_id", T.StringType(), False),
        T.StructField(DATASET_COLUMN, T.StringType(), False),
        *[metadata[name] for name in FRAGMENT_KEYS[2:]],
        *[T.StructField(name, spark_type(spec), True) for name, spec in attributes.items()],
    ])


def precedence_ranks(precedence: Sequence[str], datasets: Sequence[str]) -> dict[str, int]:
    """Rank of each dataset (0 = most trusted): those listed in ``precedence`` first, the others after, by name."""
    ranks = {name: i for i, name in enumerate(precedence)}
    for name in sorted(set(datasets) - set(ranks)):
        ranks[name] = len(ranks)
    return ranks


def policy_ranks(ws: Workspace, policy: MergePolicy) -> dict[str, int] | None:
    """The ``ranks`` of :func:`transform_merge_attributes` for a merge policy (None: timestamp ordered)."""
    if policy.type != "dataset_precedence":
        return None
    return precedence_ranks(policy.datasets, [d.name for d in ws.profile_datasets])


# ---------------------------------------------------------------- transforms


def transform_fragments(df: DataFrame, dataset: str, schema: SchemaSpec, namespace_type: str,
                        identity_map: DataFrame, attributes: Mapping[str, FieldSpec]) -> DataFrame:
    """The profile records of one dataset attached to their profile id.

    Columns: ``profile_id``, ``_dataset``, ``_record_ts``, ``_batch_date``, ``_source_file``,
    ``_row_number``, then every attribute (null where the dataset's schema lacks it). Records whose
    primary identity is missing from ``identity_map`` (the run date's slice) are dropped.
    """
    primary = schema.primary_identity
    assert primary is not None and primary.identity is not None
    records = df.select("*", normalize(namespace_type, F.col(primary.name)).alias("_identity"))
    ids = identity_map.select(F.col("namespace").alias("_namespace"), F.col("value").alias("_identity"),
                              "profile_id")
    joined = records.join(ids.where(F.col("_namespace") == primary.identity.namespace), "_identity")
    declared = {f.name for f in schema.fields}
    values = [(F.col(name) if name in declared else F.lit(None)).cast(spark_type(spec)).alias(name)
              for name, spec in attributes.items()]
    return joined.select("profile_id", F.lit(dataset).alias(DATASET_COLUMN), RECORD_TS, BATCH_DATE, SOURCE_FILE,
                         ROW_NUMBER, *values)


def _rank(ranks: Mapping[str, int], dataset: Column) -> Column:
    lookup = F.create_map(*[F.lit(x) for name, rank in sorted(ranks.items()) for x in (name, rank)])
    return F.coalesce(lookup[dataset], F.lit(len(ranks)))


def last_update_by_dataset(datasets: Sequence[str]) -> Column:
    """An aggregate over a profile's fragments: dataset -> newest ``_record_ts`` of its records (datasets of
    ``datasets`` without a record of the profile are left out of the map)."""
    if not datasets:
        return F.create_map().cast(LAST_UPDATE_TYPE)
    newest = [x for name in sorted(datasets)
              for x in (F.lit(name), F.max(F.when(F.col(DATASET_COLUMN) == name, F.col(RECORD_TS))))]
    return F.map_filter(F.create_map(*newest), lambda _, ts: ts.isNotNull())


def transform_merge_attributes(fragments: DataFrame, attributes: Sequence[str],
                               ranks: Mapping[str, int] | None = None,
                               datasets: Sequence[str] | None = None) -> DataFrame:
    """One row per profile id of ``fragments``: each attribute from the fragment that wins it.

    Without ``ranks`` (timestamp_ordered) the newest non-null value wins, by (_record_ts,
    _batch_date, _source_file, _row_number). With ``ranks`` (dataset_precedence) the non-null value
    of the lowest-ranked dataset wins, ties by the same time order. With ``datasets``, a
    ``dataset_last_update`` column is computed in the same aggregation (:func:`last_update_by_dataset`).
    """
    order = [F.col(RECORD_TS), F.col(BATCH_DATE), F.col(SOURCE_FILE), F.col(ROW_NUMBER)]
    if ranks:
        order = [(-_rank(ranks, F.col(DATASET_COLUMN))).alias("rank"), *order]
    key = F.struct(*order)
    # max_by skips rows whose ordering is null: a fragment without the attribute cannot win it.
    merged = [F.max_by(F.col(name), F.when(F.col(name).isNotNull(), key)).alias(name) for name in attributes]
    if datasets is not None:
        merged.append(last_update_by_dataset(datasets).alias(LAST_UPDATE))
    if not merged:
        return fragments.select("profile_id").distinct()
    return fragments.groupBy("profile_id").agg(*merged)


def transform_profile_identities(identity_map: DataFrame) -> DataFrame:
    """``profile_id``, ``identities`` (namespace -> sorted values) and ``identity_count`` per profile."""
    per_namespace = (identity_map.groupBy("profile_id", "namespace")
                     .agg(F.array_sort(F.collect_list("value")).alias("values")))
    # Entries sorted by namespace, so the map is built in the same order on every run.
    return (per_namespace.groupBy("profile_id")
            .agg(F.map_from_entries(F.array_sort(F.collect_list(F.struct("namespace", "values"))))
                 .alias("identities"),
                 F.sum(F.size("values")).cast(T.IntegerType()).alias("identity_count")))


def transform_event_counts(events: DataFrame) -> DataFrame:
    """``profile_id``, ``events_in_window``: the number of events of each profile of ``events``."""
    return events.groupBy("profile_id").agg(F.count(F.lit(1)).alias(EVENTS_IN_WINDOW))


def transform_profiles(identities: DataFrame, merged: DataFrame, attributes: Mapping[str, FieldSpec],
                       run_date: dt.date, event_counts: DataFrame | None = None) -> DataFrame:
    """Every profile of ``identities`` with its merged attributes (null when it has no profile record).

    ``merged`` may carry ``dataset_last_update`` (an empty map when absent or without a record);
    ``event_counts`` is :func:`transform_event_counts`' result (0 for a profile without events, or for all
    profiles when None).
    """
    joined = identities.join(merged, "profile_id", "left")
    if event_counts is not None:
        joined = joined.join(event_counts, "profile_id", "left")
    empty = F.create_map().cast(LAST_UPDATE_TYPE)
    last_update = F.coalesce(F.col(LAST_UPDATE), empty) if LAST_UPDATE in merged.columns else empty
    events = F.coalesce(F.col(EVENTS_IN_WINDOW), F.lit(0)) if event_counts is not None else F.lit(0)
    return joined.select(
        F.lit(run_date).alias("run_date"), "profile_id", F.col("identities").cast(IDENTITIES_TYPE), "identity_count",
        last_update.cast(LAST_UPDATE_TYPE).alias(LAST_UPDATE), events.cast(T.LongType()).alias(EVENTS_IN_WINDOW),
        *[F.col(name).cast(spark_type(spec)).alias(name) for name, spec in attributes.items()])


# ---------------------------------------------------------------- I/O


def read_fragments(spark: SparkSession, ws: Workspace, ctx: RunContext, identity_map: DataFrame,
                   warn: bool = False) -> DataFrame:
    """The fragments of every profile dataset as of the run date (:func:`transform_fragments`, unioned)."""
    attributes = ws.profile_attributes()
    parts = []
    for dataset in ws.profile_datasets:
        if warn and not dataset.identity_enabled:
            # Its identities are not resolved, so only those also seen in another dataset match.
            log.warning("dataset %s feeds profiles but is not identity-enabled: its records join a profile only "
                        "through identities resolved from other datasets", dataset.name)
        schema = ws.schema_of(dataset.name)
        primary = schema.primary_identity
        assert primary is not None and primary.identity is not None
        records = read_dataset_as_of(spark, ctx.lake, ws, dataset.name, ctx.run_date)
        parts.append(transform_fragments(records, dataset.name, schema,
                                         ws.namespaces[primary.identity.namespace].type, identity_map, attributes))
    return reduce(DataFrame.unionByName, parts) if parts else spark.createDataFrame([], fragments_struct(attributes))


def merge_profiles(ws: Workspace, fragments: DataFrame, policy: MergePolicy,
                   with_last_update: bool = False) -> DataFrame:
    """The fragments merged under ``policy``: profile_id then every profile attribute (and dataset_last_update)."""
    datasets = [d.name for d in ws.profile_datasets] if with_last_update else None
    return transform_merge_attributes(fragments, list(ws.profile_attributes()), policy_ranks(ws, policy), datasets)


def read_event_counts(spark: SparkSession, ws: Workspace, ctx: RunContext, identity_map: DataFrame) -> DataFrame | None:
    """Events per profile in the audiences' evaluation window: every event type, from the first day any
    audience's event condition reads (all history when one is unbounded) to the run date. None when no
    audience reads events (nothing is considered by segmentation: every count is 0)."""
    counters = collect_event_counters(ws.audiences.values())
    if not counters:
        return None
    events = read_events(spark, ws, ctx.lake, ctx.run_date, identity_map, lookback_start(counters, ctx.run_date))
    return transform_event_counts(events) if events is not None else None


def run(spark: SparkSession, ws: Workspace, ctx: RunContext) -> dict[str, int]:
    """Merge the profile datasets as of the run date into one row per profile of the identity map."""
    attributes = ws.profile_attributes()
    path = ctx.lake.path(PROFILES)
    identity_map = (read_table(spark, ctx.lake.path(IDENTITY_MAP), IDENTITY_MAP.schema)
                    .where(F.col("run_date") == F.lit(ctx.run_date))).persist()
    try:
        fragments = read_fragments(spark, ws, ctx, identity_map, warn=True)
        merged = merge_profiles(ws, fragments, ws.config.policy(), with_last_update=True)
        profiles = transform_profiles(transform_profile_identities(identity_map), merged, attributes, ctx.run_date,
                                      read_event_counts(spark, ws, ctx, identity_map))

        create_table_if_absent(spark, path, profiles_struct(attributes), PROFILES.partition_by)
        # An attribute added to a profile schema becomes a new column (additive evolution).
        replace_slice(profiles, path, f"run_date = {date_literal(ctx.run_date)}", PROFILES.partition_by,
                      add_new_columns=True)
    finally:
        identity_map.unpersist()

    written = read_table(spark, path).where(F.col("run_date") == F.lit(ctx.run_date))
    has_attribute = reduce(lambda a, b: a | b, [F.col(name).isNotNull() for name in attributes], F.lit(False))
    row = written.agg(F.count(F.lit(1)).alias("profiles"),
                      F.count(F.when(has_attribute, F.lit(1))).alias("with_attributes")).first()
    assert row is not None
    return {"profiles": int(row["profiles"]), "profiles_with_attributes": int(row["with_attributes"])}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``spark-submit jobs/build_profiles.py``."""
    parser = job_parser("Build profiles: merge the profile records of each resolved profile.")
    run_job(parser, argv, lambda _args: StepKey(STEP), lambda spark, ws, ctx, _args: run(spark, ws, ctx),
            requires=lambda _args, ws: [StepKey("resolve_identities"),
                                        *[StepKey("ingest", d.name) for d in ws.datasets.values()]])


if __name__ == "__main__":
    main()
