"""Step evaluate_audiences: which profiles belong to which audience on the run date, and since when.

All audiences are evaluated together (see :mod:`cdp.audiences`): one read of the profile snapshot,
one aggregation over the events of the longest window. Each (audience, profile) then gets a status
against the previous snapshot of the membership table:

========================  ==========================  ==========================================
qualifies today           previous status             today
========================  ==========================  ==========================================
yes                       realized / existing         existing (status_since kept)
yes                       none / exited               realized (status_since = run date)
no                        realized / existing         exited (status_since = run date)
no                        exited                      exited, kept while younger than the retention
========================  ==========================  ==========================================

Everything read is the run date's snapshot (profiles, identity map) or what had landed by then
(events with ``_batch_date <= D``), so re-running or backfilling a day reproduces that day.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Iterable, Mapping, Sequence

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.audiences import (
    AUDIENCE_ID,
    PROFILE_ID,
    EventCounter,
    RuleError,
    classify_all,
    collect_event_counters,
    event_counters,
    event_fields,
    field_column,
    lookback_start,
    transform_qualify,
    with_counters,
    with_dependencies,
)
from cdp.delta_io import latest_partition_before, read_table, record_metrics, replace_slice, table_exists
from cdp.identities import normalize
from cdp.lake import AUDIENCE_CATALOG, AUDIENCE_MEMBERSHIP, DATASET, IDENTITY_MAP, PROFILES, date_literal
from cdp.run_context import RunContext, job_parser, parse_job_args
from cdp.schemas import BATCH_DATE, spark_type
from cdp.spark import get_session
from cdp.workspace.loader import Workspace
from cdp.workspace.models import AudienceSpec, SchemaSpec

log = logging.getLogger(__name__)

STEP = "evaluate_audiences"
SCOPE = "all"
# An exited member stays visible (so destinations can remove it) for this many days after exiting.
EXITED_RETENTION_DAYS = 30

REALIZED = "realized"
EXISTING = "existing"
EXITED = "exited"
MEMBER_STATUSES = (REALIZED, EXISTING)

KEYS = [AUDIENCE_ID, PROFILE_ID]
CHANGE_DATA_FEED = "delta.enableChangeDataFeed"


def transform_events(raw: DataFrame, identity_map: DataFrame, dataset: str, schema: SchemaSpec, namespace: str,
                     namespace_type: str, run_date: dt.date, lookback_days: int | None,
                     event_types: Sequence[str] | None = None,
                     fields: Mapping[str, T.DataType] | None = None) -> DataFrame:
    """One event dataset's events of the lookback window, linked to profiles.

    ``raw`` is the dataset's table, ``identity_map`` the identity map of the run date. Keeps what had
    landed by the run date with an event day in [run_date - lookback_days + 1, run_date] (no lower
    bound when ``lookback_days`` is None) and, when given, only the event types some rule counts;
    returns (profile_id, dataset, event_type, event_date, event_time) then ``field_<name>`` for each of ``fields``
    (null, of the given type, where this dataset's schema lacks the field).
    Events whose identity is not in the map belong to no profile and are dropped.
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
    events = raw.where(in_range & in_days).select(
        F.lit(namespace).alias("namespace"),
        normalize(namespace_type, F.col(schema.primary_identity.name)).alias("value"),
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


def transform_statuses(qualified: DataFrame, previous: DataFrame, run_date: dt.date,
                       evaluation_time: dt.datetime, retention_days: int = EXITED_RETENTION_DAYS) -> DataFrame:
    """The membership snapshot of the run date (the AUDIENCE_MEMBERSHIP columns).

    ``qualified`` holds (audience_id, profile_id) pairs that qualify today; ``previous`` is the
    previous snapshot (empty on the first run). See the module docstring for the transitions.
    """
    today = qualified.select(*KEYS).distinct().withColumn("_qualifies", F.lit(True))
    before = previous.select(*KEYS, F.col("status").alias("_prev_status"),
                             F.col("status_since").alias("_prev_since"),
                             F.col("last_qualification_time").alias("_prev_time"))
    both = today.join(before, KEYS, "full_outer")

    qualifies = F.coalesce(F.col("_qualifies"), F.lit(False))
    was_member = F.coalesce(F.col("_prev_status").isin(*MEMBER_STATUSES), F.lit(False))
    was_exited = F.coalesce(F.col("_prev_status") == EXITED, F.lit(False))
    recently_exited = was_exited & (F.datediff(F.lit(run_date), F.col("_prev_since")) < retention_days)
    day = F.lit(run_date)

    # No branch matches an old exit: its status is null and the row is dropped below.
    status = (F.when(qualifies & was_member, F.lit(EXISTING))
              .when(qualifies, F.lit(REALIZED))
              .when(was_member, F.lit(EXITED))
              .when(recently_exited, F.lit(EXITED)))
    since = (F.when(qualifies & was_member, F.col("_prev_since"))
             .when(qualifies | was_member, day)
             .otherwise(F.col("_prev_since")))
    qualification_time = F.when(qualifies, F.lit(evaluation_time)).otherwise(F.col("_prev_time"))

    out = both.select(day.alias("run_date"), *KEYS, status.alias("status"),
                      qualification_time.alias("last_qualification_time"), since.alias("status_since"))
    return conform(out.where(F.col("status").isNotNull()))


def conform(df: DataFrame) -> DataFrame:
    """The columns of AUDIENCE_MEMBERSHIP, in its order and types."""
    assert AUDIENCE_MEMBERSHIP.schema is not None
    return df.select(*[F.col(f.name).cast(f.dataType) for f in AUDIENCE_MEMBERSHIP.schema.fields])


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


def transform_catalog(spark: SparkSession, audiences: Mapping[str, AudienceSpec], run_date: dt.date) -> DataFrame:
    """The AUDIENCE_CATALOG rows of the run date: each audience's streaming eligibility and its reason."""
    rows = [(run_date, audience_id, audiences[audience_id].name, e.evaluation, e.reason)
            for audience_id, e in classify_all(audiences).items()]
    return spark.createDataFrame(rows, AUDIENCE_CATALOG.schema)


def ensure_membership_table(spark: SparkSession, path: str) -> None:
    """Create the membership table with the change data feed on (or turn it on for a table made before).

    Destinations and streaming consumers read realized / exited changes from the feed
    (``readChangeFeed``) instead of diffing two snapshots.
    """
    assert AUDIENCE_MEMBERSHIP.schema is not None
    if not table_exists(spark, path):
        (DeltaTable.createIfNotExists(spark).location(path).addColumns(AUDIENCE_MEMBERSHIP.schema)
         .partitionedBy(*AUDIENCE_MEMBERSHIP.partition_by).property(CHANGE_DATA_FEED, "true").execute())
        return
    properties = DeltaTable.forPath(spark, path).detail().first()
    if properties is None or properties["properties"].get(CHANGE_DATA_FEED) != "true":
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({CHANGE_DATA_FEED} = true)")


def read_events(spark: SparkSession, ws: Workspace, ctx: RunContext, identity_map: DataFrame,
                counters: Sequence[EventCounter]) -> DataFrame | None:
    """The union of the event datasets the counters need, linked to profiles (None: nothing to read)."""
    first = lookback_start(counters, ctx.run_date)
    lookback = (ctx.run_date - first).days + 1 if first is not None else None
    fields = event_field_types(ws, event_fields(counters))
    frames: list[DataFrame] = []
    for dataset in ws.event_datasets:
        types = {c.event_type for c in counters if c.dataset in (None, dataset.name)}
        if not types:
            continue  # no rule counts this dataset's events
        schema = ws.schema_of(dataset.name)
        primary = schema.primary_identity
        if primary is None or primary.identity is None:
            log.warning("event dataset %s has no primary identity: its events cannot count for audiences",
                        dataset.name)
            continue
        path = ctx.lake.path(DATASET, dataset.name)
        if not table_exists(spark, path):
            log.warning("event dataset %s has no table yet at %s: its events count 0", dataset.name, path)
            continue
        namespace = primary.identity.namespace
        frames.append(transform_events(
            read_table(spark, path), identity_map, dataset.name, schema, namespace, ws.namespaces[namespace].type,
            ctx.run_date, lookback, sorted(types), fields))
    return functools.reduce(DataFrame.unionByName, frames) if frames else None


def qualify(spark: SparkSession, ws: Workspace, ctx: RunContext, audiences: Sequence[AudienceSpec]) -> DataFrame:
    """(audience_id, profile_id) qualifying on the run date: the profile snapshot of that date, its events
    measured in one aggregation, every rule in one projection. Reads only; writes nothing."""
    day = ctx.run_date
    profiles = read_table(spark, ctx.lake.path(PROFILES)).where(F.col("run_date") == F.lit(day)).drop("run_date")
    counters = collect_event_counters(audiences)
    if counters:
        identity_map = read_table(spark, ctx.lake.path(IDENTITY_MAP), IDENTITY_MAP.schema).where(
            F.col("run_date") == F.lit(day))
        events = read_events(spark, ws, ctx, identity_map, counters)
        if events is None:
            # No events at all: every counter is 0 for every profile.
            events = empty_events(spark, event_field_types(ws, event_fields(counters)))
        profiles = with_counters(profiles, event_counters(events, counters, day), counters)
    return transform_qualify(profiles, audiences)


def preview(spark: SparkSession, ws: Workspace, ctx: RunContext, audience_id: str,
            samples: int = 10) -> tuple[int, list[str]]:
    """The size of one audience on the run date and up to ``samples`` member profile ids (the smallest ids,
    so the same lake gives the same sample), from the current lake, without writing anything.

    Only the audience and the audiences it names are evaluated.
    """
    if audience_id not in ws.audiences:
        raise RuleError(f"audience '{audience_id}' is not defined (defined: {', '.join(sorted(ws.audiences))})")
    members = qualify(spark, ws, ctx, with_dependencies(ws.audiences, [audience_id])).where(
        F.col(AUDIENCE_ID) == F.lit(audience_id)).select(PROFILE_ID).cache()
    try:
        size = members.count()
        sample = [r[PROFILE_ID] for r in members.orderBy(PROFILE_ID).limit(samples).collect()]
    finally:
        members.unpersist()
    return size, sample


def run(spark: SparkSession, ws: Workspace, ctx: RunContext) -> dict[str, int]:
    """Evaluate every audience for the run date and write its membership snapshot; return the counts."""
    lake, day = ctx.lake, ctx.run_date
    audiences = list(ws.audiences.values())
    counters = collect_event_counters(audiences)
    qualified = qualify(spark, ws, ctx, audiences)

    membership_path = lake.path(AUDIENCE_MEMBERSHIP)
    ensure_membership_table(spark, membership_path)
    history = read_table(spark, membership_path, AUDIENCE_MEMBERSHIP.schema)
    previous_day = latest_partition_before(history, "run_date", day)
    if previous_day is None:
        previous = history.where(F.lit(False))
    else:
        # Members of an audience removed from the workspace are not carried over: the audience is gone.
        previous = history.where((F.col("run_date") == F.lit(previous_day))
                                 & F.col(AUDIENCE_ID).isin(*[a.id for a in audiences]))
    log.info("evaluating %d audience(s), %d event counter(s), previous snapshot %s", len(audiences), len(counters),
             previous_day or "none")

    snapshot = transform_statuses(qualified, previous, day, ctx.evaluation_time)
    replace_slice(snapshot, membership_path, f"run_date = {date_literal(day)}", AUDIENCE_MEMBERSHIP.partition_by)
    catalog = transform_catalog(spark, ws.audiences, day)
    for row in catalog.collect():
        log.info("audience %s: %s (%s)", row[AUDIENCE_ID], row["evaluation"], row["reason"])
    replace_slice(catalog, lake.path(AUDIENCE_CATALOG), f"run_date = {date_literal(day)}",
                  AUDIENCE_CATALOG.partition_by)

    # Counted from the slice just written: cheaper than evaluating the rules a second time.
    written = read_table(spark, membership_path).where(F.col("run_date") == F.lit(day))
    counts = {(r[AUDIENCE_ID], r["status"]): r["count"]
              for r in written.groupBy(AUDIENCE_ID, "status").count().collect()}
    metrics: dict[str, int] = {"audiences": len(audiences)}
    for audience in audiences:
        by_status = {s: int(counts.get((audience.id, s), 0)) for s in (REALIZED, EXISTING, EXITED)}
        metrics[f"{audience.id}.size"] = by_status[REALIZED] + by_status[EXISTING]
        metrics.update({f"{audience.id}.{s}": n for s, n in by_status.items()})
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m jobs.evaluate_audiences --run-date YYYY-MM-DD``."""
    parser = job_parser("Evaluate every audience of the workspace for a run date.")
    _, ctx, ws = parse_job_args(parser, argv)
    spark = get_session(f"cdp-{STEP}")
    metrics = run(spark, ws, ctx)
    record_metrics(spark, ctx.lake, ctx.run_date, STEP, SCOPE, metrics)


if __name__ == "__main__":
    main()
