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

Merged and removed profiles. The statuses above follow each profile id's own evaluation against its own
previous memberships, so the profile that survives a merge (or keeps its id through a split) gets its
statuses as any other profile. A profile id of the previous snapshot that no longer exists on the run
date exits every audience it was a member of, so that destinations can remove it:

========================  ==================================  ==============================================
why the id is gone        exit_reason                         merged_into
========================  ==================================  ==============================================
merged into another       ``profile_merged`` (a ``merge`` row  the surviving profile id
                          of ``profile_id_changes`` names it
                          as previous_profile_id)
identities gone           ``profile_removed``                 null
========================  ==================================  ==============================================

Other exits are ``not_qualified`` (the rules no longer match) or ``excluded`` (a segmentation guardrail
left the profile out); ``exit_reason`` is null unless the status is exited. An exited row is kept for the
exited-membership retention like any exit; one that had exited for another reason and whose profile
disappears later is re-stamped with the new reason and the run date (status_since), so that an exited
row whose profile is absent always says why. The part of a split that gets a new id starts without
memberships and realizes those it qualifies for.

Everything read is the run date's snapshot (profiles, identity map) or what had landed by then
(events with ``_batch_date <= D``), so re-running or backfilling a day reproduces that day.

Segmentation guardrails: a profile with more events in the evaluation window than
``guardrails.max_events_per_profile`` (its ``events_in_window``), or more identities than
``guardrails.max_identities_per_graph``, is left out of evaluation: it gets no membership (a
previous one exits) and is counted in the metrics ``excluded.event_cap`` / ``excluded.identity_cap``.

Merge policies: the profiles table is merged with the workspace's default policy. Audiences naming
another policy read their attributes from the same fragments merged under that policy, one merge
per distinct policy, joined to the profiles before the single event aggregation and projection.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp import small_tables
from cdp.audiences import (
    AUDIENCE_ID,
    PROFILE_ID,
    EventCounter,
    RuleError,
    classify_all,
    collect_event_counters,
    event_counters,
    event_fields,
    lookback_start,
    policy_prefix,
    transform_qualify,
    with_counters,
    with_dependencies,
)
from cdp.delta_io import (
    create_table,
    last_commit,
    latest_partition_before,
    read_run_date_slice,
    read_table,
    replace_slice,
    table_detail,
)
from cdp.events import empty_events, event_field_types
from cdp.events import read_events as read_linked_events
from cdp.job import StepKey, run_job, write_output
from cdp.lake import (
    AUDIENCE_CATALOG,
    AUDIENCE_MEMBERSHIP,
    AUDIENCE_SIZES,
    EXCLUDED,
    EXISTING,
    EXIT_REASONS,
    EXITED,
    IDENTITY_MAP,
    NOT_QUALIFIED,
    PROFILE_ID_CHANGES,
    PROFILE_MERGED,
    PROFILE_REMOVED,
    PROFILES,
    REALIZED,
    date_literal,
)
from cdp.monitoring.aggregates import audience_sizes
from cdp.run_context import RunContext, job_parser
from cdp.schemas import spark_type
from cdp.workspace.loader import Workspace
from cdp.workspace.models import AudienceSpec, Guardrails, MergePolicy
from jobs.build_profiles import EVENTS_IN_WINDOW, merge_profiles, read_fragments

log = logging.getLogger(__name__)

STEP = "evaluate_audiences"
SCOPE = "all"
# An exited member stays visible (so destinations can remove it) for this many days after exiting.
EXITED_RETENTION_DAYS = 30

MEMBER_STATUSES = (REALIZED, EXISTING)

KEYS = [AUDIENCE_ID, PROFILE_ID]
CHANGE_DATA_FEED = "delta.enableChangeDataFeed"

# The key of the job's output (cdp.job.write_output) that the operator turns into the asset event's extra.
MEMBERSHIP_OUTPUT = "membership"

MERGE = "merge"  # profile_id_changes.change of a profile id merged into another

# Why a profile is left out of evaluation (metrics excluded.<reason>).
EVENT_CAP = "event_cap"
IDENTITY_CAP = "identity_cap"


def _caps(profiles: DataFrame, guardrails: Guardrails) -> dict[str, Column]:
    """Per segmentation guardrail, whether a profile is over it (never null)."""
    # A profiles table written before events_in_window existed counts no events.
    events = F.coalesce(F.col(EVENTS_IN_WINDOW), F.lit(0)) if EVENTS_IN_WINDOW in profiles.columns else F.lit(0)
    return {EVENT_CAP: events > F.lit(guardrails.max_events_per_profile),
            IDENTITY_CAP: F.coalesce(F.col("identity_count") > F.lit(guardrails.max_identities_per_graph),
                                     F.lit(False))}


def transform_exclusions(profiles: DataFrame, guardrails: Guardrails) -> DataFrame:
    """(profile_id, event_cap, identity_cap): every profile over a segmentation guardrail, and which."""
    caps = _caps(profiles, guardrails)
    return profiles.where(caps[EVENT_CAP] | caps[IDENTITY_CAP]).select(
        PROFILE_ID, *[column.alias(reason) for reason, column in caps.items()])


def transform_evaluated(profiles: DataFrame, guardrails: Guardrails) -> DataFrame:
    """The profiles audience evaluation considers: those within every segmentation guardrail."""
    caps = _caps(profiles, guardrails)
    return profiles.where(~(caps[EVENT_CAP] | caps[IDENTITY_CAP]))


def excluded_counts(profiles: DataFrame, guardrails: Guardrails) -> dict[str, int]:
    """``excluded.event_cap`` and ``excluded.identity_cap``: profiles over each guardrail (one over both counts
    in both), in one aggregation over two columns of the profiles."""
    caps = _caps(profiles, guardrails)
    row = profiles.agg(*[F.count(F.when(column, F.lit(1))).alias(reason) for reason, column in caps.items()]).first()
    assert row is not None
    return {f"excluded.{reason}": int(row[reason]) for reason in caps}


def transform_statuses(qualified: DataFrame, previous: DataFrame, run_date: dt.date,
                       evaluation_time: dt.datetime, profiles: DataFrame, merges: DataFrame,
                       retention_days: int = EXITED_RETENTION_DAYS) -> DataFrame:
    """The membership snapshot of the run date (the AUDIENCE_MEMBERSHIP columns).

    ``qualified`` holds (audience_id, profile_id) pairs that qualify today; ``previous`` is the
    previous snapshot (empty on the first run); ``profiles`` holds (profile_id, excluded) for every
    profile of the run date, ``excluded`` true when a segmentation guardrail left it out; ``merges``
    holds (previous_profile_id, profile_id) for every profile id merged into another on the run date.
    See the module docstring for the transitions and exit reasons.
    """
    today = qualified.select(*KEYS).distinct().withColumn("_qualifies", F.lit(True))
    before = previous.select(*KEYS, F.col("status").alias("_prev_status"),
                             F.col("status_since").alias("_prev_since"),
                             F.col("last_qualification_time").alias("_prev_time"),
                             F.col("exit_reason").alias("_prev_reason"), F.col("merged_into").alias("_prev_into"))
    present = profiles.select(PROFILE_ID, F.lit(True).alias("_present"), F.col("excluded").alias("_excluded"))
    # One merge row per previous id (its identities' home component); distinct guards against a doctored table.
    survivors = merges.select(F.col("previous_profile_id").alias(PROFILE_ID),
                              F.col("profile_id").alias("_survivor")).dropDuplicates([PROFILE_ID])
    both = (today.join(before, KEYS, "full_outer")
            .join(present, PROFILE_ID, "left")
            .join(survivors, PROFILE_ID, "left"))

    qualifies = F.coalesce(F.col("_qualifies"), F.lit(False))
    was_member = F.coalesce(F.col("_prev_status").isin(*MEMBER_STATUSES), F.lit(False))
    was_exited = F.coalesce(F.col("_prev_status") == EXITED, F.lit(False))
    recently_exited = was_exited & (F.datediff(F.lit(run_date), F.col("_prev_since")) < retention_days)
    gone = F.col("_present").isNull()
    gone_reason = F.when(F.col("_survivor").isNotNull(), F.lit(PROFILE_MERGED)).otherwise(F.lit(PROFILE_REMOVED))
    # An earlier exit of an id that is gone today takes the reason it is gone (see the module docstring).
    restamp = (~qualifies & ~was_member & recently_exited & gone
               & ~F.coalesce(F.col("_prev_reason").isin(PROFILE_MERGED, PROFILE_REMOVED), F.lit(False)))
    exits_today = (~qualifies & was_member) | restamp
    day = F.lit(run_date)

    # No branch matches an old exit: its status is null and the row is dropped below.
    status = (F.when(qualifies & was_member, F.lit(EXISTING))
              .when(qualifies, F.lit(REALIZED))
              .when(was_member, F.lit(EXITED))
              .when(recently_exited, F.lit(EXITED)))
    since = (F.when(qualifies & was_member, F.col("_prev_since"))
             .when(qualifies | exits_today, day)
             .otherwise(F.col("_prev_since")))
    qualification_time = F.when(qualifies, F.lit(evaluation_time)).otherwise(F.col("_prev_time"))
    reason = (F.when(qualifies, F.lit(None).cast("string"))
              .when(exits_today & gone, gone_reason)
              .when(exits_today & F.coalesce(F.col("_excluded"), F.lit(False)), F.lit(EXCLUDED))
              .when(exits_today, F.lit(NOT_QUALIFIED))
              .otherwise(F.col("_prev_reason")))
    merged_into = (F.when(qualifies, F.lit(None).cast("string"))
                   .when(exits_today, F.when(gone, F.col("_survivor")))
                   .otherwise(F.col("_prev_into")))

    out = both.select(day.alias("run_date"), *KEYS, status.alias("status"),
                      qualification_time.alias("last_qualification_time"), since.alias("status_since"),
                      reason.alias("exit_reason"), merged_into.alias("merged_into"))
    return conform(out.where(F.col("status").isNotNull()))


def transform_profile_presence(profiles: DataFrame, guardrails: Guardrails) -> DataFrame:
    """(profile_id, excluded): every profile of a snapshot and whether a segmentation guardrail leaves it out."""
    caps = _caps(profiles, guardrails)
    return profiles.select(PROFILE_ID, (caps[EVENT_CAP] | caps[IDENTITY_CAP]).alias("excluded"))


def conform(df: DataFrame) -> DataFrame:
    """The columns of AUDIENCE_MEMBERSHIP, in its order and types."""
    assert AUDIENCE_MEMBERSHIP.schema is not None
    return df.select(*[F.col(f.name).cast(f.dataType) for f in AUDIENCE_MEMBERSHIP.schema.fields])


def catalog_rows(audiences: Mapping[str, AudienceSpec], run_date: dt.date) -> list[tuple[object, ...]]:
    """The AUDIENCE_CATALOG rows of the run date: each audience's streaming eligibility and its reason."""
    return [(run_date, audience_id, audiences[audience_id].name, e.evaluation, e.reason)
            for audience_id, e in classify_all(audiences).items()]


def ensure_membership_table(spark: SparkSession, path: str) -> None:
    """Create the membership table with the change data feed on (or turn it on for a table made before).

    Destinations and streaming consumers read realized / exited changes from the feed
    (``readChangeFeed``) instead of diffing two snapshots.
    """
    assert AUDIENCE_MEMBERSHIP.schema is not None
    detail = table_detail(spark, path)
    if detail is None:
        create_table(spark, path, AUDIENCE_MEMBERSHIP.schema, AUDIENCE_MEMBERSHIP.partition_by,
                     {CHANGE_DATA_FEED: "true"})
        return
    properties = detail
    if properties is None or properties["properties"].get(CHANGE_DATA_FEED) != "true":
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({CHANGE_DATA_FEED} = true)")
    # Additive evolution: a table made before a nullable column was declared gains it (earlier rows read null).
    stored = set(spark.read.format("delta").load(path).columns)
    missing = [f for f in AUDIENCE_MEMBERSHIP.schema.fields if f.name not in stored]
    if missing:
        added = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({added})")
        log.info("audience_membership: added column(s) %s", ", ".join(f.name for f in missing))


def read_events(spark: SparkSession, ws: Workspace, ctx: RunContext, identity_map: DataFrame,
                counters: Sequence[EventCounter]) -> DataFrame | None:
    """The union of the event datasets the counters need, linked to profiles (None: nothing to read)."""
    types = {dataset.name: sorted({c.event_type for c in counters if c.dataset in (None, dataset.name)})
             for dataset in ws.event_datasets}
    return read_linked_events(spark, ws, ctx.lake, ctx.run_date, identity_map, lookback_start(counters, ctx.run_date),
                              types, event_field_types(ws, event_fields(counters)))


def _policy_key(policy: MergePolicy) -> tuple[str, tuple[str, ...]]:
    return policy.type, tuple(policy.datasets) if policy.type == "dataset_precedence" else ()


def other_policies(ws: Workspace, audiences: Sequence[AudienceSpec]) -> list[str]:
    """The merge policies the audiences name that merge differently from the default one (by definition:
    a second name for the default policy costs no merge)."""
    default = _policy_key(ws.config.policy())
    named = {a.merge_policy for a in audiences if a.merge_policy is not None}
    return sorted(name for name in named if _policy_key(ws.config.policy(name)) != default)


def qualify(spark: SparkSession, ws: Workspace, ctx: RunContext, audiences: Sequence[AudienceSpec]) -> DataFrame:
    """(audience_id, profile_id) qualifying on the run date: the profile snapshot of that date within the
    segmentation guardrails, its attributes merged under each other policy the audiences name, its events
    measured in one aggregation, every rule in one projection. Reads only; writes nothing."""
    day = ctx.run_date
    profiles = read_table(spark, ctx.lake.path(PROFILES)).where(F.col("run_date") == F.lit(day)).drop("run_date")
    profiles = transform_evaluated(profiles, ws.config.guardrails)
    identity_map = read_table(spark, ctx.lake.path(IDENTITY_MAP), IDENTITY_MAP.schema).where(
        F.col("run_date") == F.lit(day))
    policies = other_policies(ws, audiences)
    if policies:
        # The same fragments build_profiles merged for the run date, merged again under each other policy.
        fragments = read_fragments(spark, ws, ctx, identity_map)
        attributes = ws.profile_attributes()
        for name in policies:
            log.info("merging the profile attributes under merge policy %s", name)
            merged = merge_profiles(ws, fragments, ws.config.policy(name))
            prefix = policy_prefix(name)
            profiles = profiles.join(merged.select(PROFILE_ID, *[
                F.col(attribute).cast(spark_type(spec)).alias(f"{prefix}{attribute}")
                for attribute, spec in attributes.items()]), PROFILE_ID, "left")
    counters = collect_event_counters(audiences)
    if counters:
        events = read_events(spark, ws, ctx, identity_map, counters)
        if events is None:
            # No events at all: every counter is 0 for every profile.
            events = empty_events(spark, event_field_types(ws, event_fields(counters)))
        profiles = with_counters(profiles, event_counters(events, counters, day), counters)
    return transform_qualify(profiles, audiences, {name: policy_prefix(name) for name in policies})


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

    profiles = read_table(spark, lake.path(PROFILES)).where(F.col("run_date") == F.lit(day))
    changes = read_run_date_slice(spark, lake, PROFILE_ID_CHANGES, day, absent_as_empty=True)
    merges = changes.where(F.col("change") == MERGE).select("previous_profile_id", PROFILE_ID)
    snapshot = transform_statuses(qualified, previous, day, ctx.evaluation_time,
                                  transform_profile_presence(profiles, ws.config.guardrails), merges)
    replace_slice(snapshot, membership_path, f"run_date = {date_literal(day)}", AUDIENCE_MEMBERSHIP.partition_by)
    # The version this snapshot was committed in: the asset event of the Airflow task carries it to the
    # destinations on their own cadence (cdp_activate__*).
    commit = last_commit(spark, membership_path)
    version = None if commit is None else int(commit["version"])
    log.info("audience_membership: run date %s committed as version %s", day, version)
    write_output(MEMBERSHIP_OUTPUT, {"run_date": day.isoformat(), "membership_version": version})
    catalog = catalog_rows(ws.audiences, day)
    for _day, audience_id, _name, evaluation, reason in catalog:
        log.info("audience %s: %s (%s)", audience_id, evaluation, reason)
    small_tables.replace_rows(lake.path(AUDIENCE_CATALOG), AUDIENCE_CATALOG, catalog, {"run_date": day})

    # Counted from the slice just written: cheaper than evaluating the rules a second time.
    written = read_table(spark, membership_path).where(F.col("run_date") == F.lit(day))
    counts = {(r[AUDIENCE_ID], r["status"]): r["count"]
              for r in written.groupBy(AUDIENCE_ID, "status").count().collect()}
    exits = {r["exit_reason"]: int(r["count"]) for r in written.where(
        (F.col("status") == EXITED) & (F.col("status_since") == F.lit(day))).groupBy("exit_reason").count().collect()}
    exited_today = {r[AUDIENCE_ID]: int(r["count"]) for r in written.where(
        (F.col("status") == EXITED) & (F.col("status_since") == F.lit(day))).groupBy(AUDIENCE_ID).count().collect()}
    small_tables.replace_rows(lake.path(AUDIENCE_SIZES), AUDIENCE_SIZES,
                              audience_sizes(day, [a.id for a in audiences], counts, exited_today), {"run_date": day})
    metrics: dict[str, int] = {"audiences": len(audiences)}
    metrics.update({f"exits.{reason}": exits.get(reason, 0) for reason in EXIT_REASONS})
    excluded = excluded_counts(profiles, ws.config.guardrails)
    if any(excluded.values()):
        log.warning("left out of audience evaluation by the segmentation guardrails: %d profile(s) over "
                    "max_events_per_profile=%d, %d over max_identities_per_graph=%d", excluded["excluded.event_cap"],
                    ws.config.guardrails.max_events_per_profile, excluded["excluded.identity_cap"],
                    ws.config.guardrails.max_identities_per_graph)
    metrics.update(excluded)
    for audience in audiences:
        by_status = {s: int(counts.get((audience.id, s), 0)) for s in (REALIZED, EXISTING, EXITED)}
        metrics[f"{audience.id}.size"] = by_status[REALIZED] + by_status[EXISTING]
        metrics.update({f"{audience.id}.{s}": n for s, n in by_status.items()})
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m jobs.evaluate_audiences --run-date YYYY-MM-DD``."""
    parser = job_parser("Evaluate every audience of the workspace for a run date.")
    run_job(parser, argv, lambda _args: StepKey(STEP), lambda spark, ws, ctx, _args: run(spark, ws, ctx),
            requires=lambda _args, _ws: [StepKey("build_profiles")])


if __name__ == "__main__":
    main()
