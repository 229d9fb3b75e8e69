"""Data-quality gates between the steps (Great Expectations on Spark DataFrames).

``--stage`` picks the gate:

- ``ingest``: per dataset, the staging slice holds exactly the rows the batch ledger counted as
  valid; every staged key reached the dataset table; the table's key (primary identity for
  profile records, event id for events) is never null and unique.
- ``identities``: every identity is in exactly one profile; no identity lacks a profile; no profile
  above guardrails.max_identities_per_graph identities nor with two values of a unique namespace.
- ``profiles``: one row per profile of the identity map, profile ids unique and not null.
- ``audiences``: memberships reference existing profiles, statuses are known, one row per
  (audience, profile); a WARNING (logged, recorded, not failing) when an audience's size changed by
  more than the guardrail ``audience_size_change_warning_share`` since the previous run.

Every outcome is written to ``quality_results``; any failure raises DataQualityError naming the
failed expectations, which fails the Airflow task and stops the run before the next step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Literal

import great_expectations.expectations as gxe
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import latest_partition_before, read_run_date_slice, read_table, replace_slice, table_exists
from cdp.job import StepKey, run_job
from cdp.lake import (
    AUDIENCE_MEMBERSHIP,
    BATCH_LEDGER,
    DATASET,
    IDENTITY_MAP,
    PROFILES,
    QUALITY_RESULTS,
    STAGING,
    Lake,
    date_literal,
)
from cdp.quality import ExpectationOutcome, Suite, raise_on_failure, validate_suites
from cdp.run_context import RunContext, job_parser
from cdp.schemas import BATCH_DATE
from cdp.workspace.loader import Workspace

log = logging.getLogger(__name__)

# Suites whose failure is a warning (logged and recorded in quality_results) rather than a stop.
AUDIENCE_SIZE_CHANGE = "audience_size_change"
WARNING_SUITES = frozenset({AUDIENCE_SIZE_CHANGE})

Stage = Literal["ingest", "identities", "profiles", "audiences"]
STAGES: tuple[Stage, ...] = ("ingest", "identities", "profiles", "audiences")


def transform_keys_found(keys: DataFrame, table: DataFrame, key: str) -> DataFrame:
    """Each key of ``keys`` with a ``found`` column: non-null when ``table`` holds the key."""
    present = table.select(F.col(key).alias("_k")).distinct().withColumn("found", F.lit(True))
    return keys.select(key).join(present, keys[key].eqNullSafe(present["_k"]), "left").drop("_k")


def transform_references(children: DataFrame, parents: DataFrame, key: str) -> DataFrame:
    """Child rows with ``parent_found``: non-null when the referenced parent row exists."""
    present = parents.select(F.col(key).alias("_k")).distinct().withColumn("parent_found", F.lit(True))
    return children.join(present, children[key] == present["_k"], "left").drop("_k")


def ingest_suites(spark: SparkSession, ws: Workspace, lake: Lake, run_date: dt.date) -> list[Suite]:
    suites: list[Suite] = []
    ledger = read_table(spark, lake.path(BATCH_LEDGER), BATCH_LEDGER.schema).where(
        F.col("batch_date") == F.lit(run_date))
    for dataset in sorted(ws.datasets.values(), key=lambda d: d.name):
        schema = ws.schemas[dataset.schema_]
        key = schema.id_field if schema.class_ == "event" else schema.primary_identity.name  # type: ignore[union-attr]
        assert key is not None
        valid_row = ledger.where(F.col("dataset") == dataset.name).agg(F.sum("rows_valid").alias("n")).first()
        valid = int(valid_row["n"] or 0) if valid_row else 0
        staging_path = lake.path(STAGING, dataset.name)
        table_path = lake.path(DATASET, dataset.name)
        if valid == 0 and not table_exists(spark, table_path):
            continue  # nothing landed yet for this dataset: nothing to check
        staged = read_table(spark, staging_path).where(F.col(BATCH_DATE) == F.lit(run_date))
        table = read_table(spark, table_path)
        suites.append(Suite(f"{dataset.name}_staging", staged, [gxe.ExpectTableRowCountToEqual(value=valid)]))
        suites.append(Suite(f"{dataset.name}_ingested", transform_keys_found(staged, table, key),
                            [gxe.ExpectColumnValuesToNotBeNull(column="found")]))
        suites.append(Suite(f"{dataset.name}_table", table, [
            gxe.ExpectColumnValuesToNotBeNull(column=key),
            gxe.ExpectColumnValuesToBeUnique(column=key),
        ]))
    return suites


def transform_profile_identity_counts(identities: DataFrame, unique_namespaces: Sequence[str]) -> DataFrame:
    """Per profile: ``identities`` (how many) and, per unique namespace ``ns``, ``unique_<ns>`` (how many values)."""
    counts = [F.count(F.lit(1)).alias("identities")]
    counts += [F.count(F.when(F.col("namespace") == ns, F.lit(1))).alias(f"unique_{ns}")
               for ns in sorted(unique_namespaces)]
    return identities.groupBy("profile_id").agg(*counts)


def identity_suites(spark: SparkSession, lake: Lake, run_date: dt.date, max_identities: int = 50,
                    unique_namespaces: Sequence[str] = ()) -> list[Suite]:
    identities = read_run_date_slice(spark, lake, IDENTITY_MAP, run_date)
    per_profile = transform_profile_identity_counts(identities, unique_namespaces)
    return [Suite("identity_map", identities, [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["namespace", "value"]),
        gxe.ExpectColumnValuesToNotBeNull(column="profile_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="value"),
    ]), Suite("identity_graphs", per_profile, [
        # Collapse protection held: no person above the cap, none with two values of a unique namespace.
        gxe.ExpectColumnValuesToBeBetween(column="identities", min_value=1, max_value=max_identities),
        *[gxe.ExpectColumnValuesToBeBetween(column=f"unique_{ns}", min_value=0, max_value=1)
          for ns in sorted(unique_namespaces)],
    ])]


def profile_suites(spark: SparkSession, lake: Lake, run_date: dt.date) -> list[Suite]:
    profiles = read_run_date_slice(spark, lake, PROFILES, run_date)
    expected = read_run_date_slice(spark, lake, IDENTITY_MAP, run_date).select("profile_id").distinct().count()
    return [Suite("profiles", profiles, [
        gxe.ExpectColumnValuesToNotBeNull(column="profile_id"),
        gxe.ExpectColumnValuesToBeUnique(column="profile_id"),
        gxe.ExpectTableRowCountToEqual(value=expected),
    ])]


def transform_size_changes(today: DataFrame, previous: DataFrame) -> DataFrame:
    """Per audience with members on either day: previous_size, size and change_share = |size - prev| / prev.

    Sizes count realized + existing members. An audience that had no member before has a null share
    (a share of nothing is undefined; GX skips nulls) unless it still has none.
    """
    def sizes(df: DataFrame, alias: str) -> DataFrame:
        members = df.where(F.col("status").isin("realized", "existing"))
        return members.groupBy("audience_id").agg(F.count(F.lit(1)).alias(alias))

    both = sizes(today, "size").join(sizes(previous, "previous_size"), "audience_id", "full_outer").fillna(
        0, subset=["size", "previous_size"])
    share = F.when(F.col("previous_size") > 0,
                   F.abs(F.col("size") - F.col("previous_size")) / F.col("previous_size"))
    return both.select("audience_id", "previous_size", "size", share.alias("change_share"))


def audience_suites(spark: SparkSession, lake: Lake, run_date: dt.date,
                    size_change_share: float = 0.5) -> list[Suite]:
    history = read_table(spark, lake.path(AUDIENCE_MEMBERSHIP), AUDIENCE_MEMBERSHIP.schema)
    membership = history.where(F.col("run_date") == F.lit(run_date))
    profiles = read_run_date_slice(spark, lake, PROFILES, run_date)
    suites = [Suite("audience_membership", transform_references(membership, profiles, "profile_id"), [
        gxe.ExpectColumnValuesToNotBeNull(column="parent_found"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["realized", "existing", "exited"]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["audience_id", "profile_id"]),
    ])]
    previous_day = latest_partition_before(history, "run_date", run_date)
    if previous_day is not None:
        previous = history.where(F.col("run_date") == F.lit(previous_day))
        changes = transform_size_changes(membership, previous)
        # One row per audience: small. Logged per audience so the task log says which one moved.
        for row in changes.where(F.col("change_share") > size_change_share).orderBy("audience_id").collect():
            log.warning("audience %s: size changed from %d on %s to %d (%.0f%% > %.0f%%)", row["audience_id"],
                        row["previous_size"], previous_day, row["size"], 100 * row["change_share"],
                        100 * size_change_share)
        suites.append(Suite(AUDIENCE_SIZE_CHANGE, changes, [
            gxe.ExpectColumnValuesToBeBetween(column="change_share", min_value=0.0, max_value=size_change_share),
        ]))
    return suites


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, stage: Stage) -> list[ExpectationOutcome]:
    """Run the stage's suites, record every outcome, raise if any failed."""
    lake = ctx.lake
    if stage == "ingest":
        suites = ingest_suites(spark, ws, lake, ctx.run_date)
    elif stage == "identities":
        suites = identity_suites(spark, lake, ctx.run_date, ws.config.guardrails.max_identities_per_graph,
                                 [code for code, ns in ws.namespaces.items() if ns.unique])
    elif stage == "profiles":
        suites = profile_suites(spark, lake, ctx.run_date)
    else:
        suites = audience_suites(spark, lake, ctx.run_date, ws.config.guardrails.audience_size_change_warning_share)
    outcomes = validate_suites(suites)
    rows = [(ctx.run_date, stage, o.suite, o.expectation, o.kwargs, o.success, o.observed) for o in outcomes]
    replace_slice(spark.createDataFrame(rows, QUALITY_RESULTS.schema), lake.path(QUALITY_RESULTS),
                  f"run_date = {date_literal(ctx.run_date)} AND stage = '{stage}'", QUALITY_RESULTS.partition_by)
    # Warning suites are recorded and logged, never stop the run: a size swing may be real (a campaign).
    for o in outcomes:
        if o.suite in WARNING_SUITES and not o.success:
            log.warning("data-quality warning at stage '%s': %s", stage, o.describe())
    raise_on_failure(stage, [o for o in outcomes if o.suite not in WARNING_SUITES])
    return outcomes


# The step whose output each gate checks: it must have committed the run date.
CHECKED_STEPS = {"identities": "resolve_identities", "profiles": "build_profiles", "audiences": "evaluate_audiences"}


def checked_steps(stage: str, ws: Workspace) -> list[StepKey]:
    """The steps whose output the gate of ``stage`` reads."""
    if stage == "ingest":
        return [StepKey("ingest", name) for name in sorted(ws.datasets)]
    return [StepKey(CHECKED_STEPS[stage])]


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser("Great Expectations gate between two steps of the daily run")
    parser.add_argument("--stage", required=True, choices=STAGES)

    def gate(spark: SparkSession, ws: Workspace, ctx: RunContext, args: argparse.Namespace) -> None:
        run(spark, ws, ctx, args.stage)

    run_job(parser, argv, lambda args: StepKey(f"check_{args.stage}"), gate,
            requires=lambda args, ws: checked_steps(args.stage, ws), record=False)


if __name__ == "__main__":
    main()
