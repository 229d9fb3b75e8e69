"""Data-quality gates between the steps (Great Expectations on Spark DataFrames).

``--stage`` picks the gate:

- ``ingest``: per dataset, the staging slice holds exactly the rows the batch ledger counted as
  valid; every staged key reached the dataset table; the table's key (primary identity for
  profile records, event id for events) is never null and unique.
- ``identities``: every identity is in exactly one profile; no identity lacks a profile.
- ``profiles``: one row per profile of the identity map, profile ids unique and not null.
- ``audiences``: memberships reference existing profiles, statuses are known, one row per
  (audience, profile).

Every outcome is written to ``quality_results``; any failure raises DataQualityError naming the
failed expectations, which fails the Airflow task and stops the run before the next step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import great_expectations.expectations as gxe
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import read_table, replace_slice, table_exists
from cdp.lake import (
    AUDIENCE_MEMBERSHIP,
    BATCH_LEDGER,
    DATASET,
    IDENTITY_MAP,
    PROFILES,
    QUALITY_RESULTS,
    STAGING,
    Lake,
    TableSpec,
    date_literal,
)
from cdp.quality import ExpectationOutcome, Suite, raise_on_failure, validate_suites
from cdp.run_context import RunContext, job_parser, parse_job_args
from cdp.schemas import BATCH_DATE
from cdp.spark import get_session
from cdp.workspace.loader import Workspace

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


def identity_suites(spark: SparkSession, lake: Lake, run_date: dt.date) -> list[Suite]:
    identities = _snapshot(spark, lake, IDENTITY_MAP, run_date)
    return [Suite("identity_map", identities, [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["namespace", "value"]),
        gxe.ExpectColumnValuesToNotBeNull(column="profile_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="value"),
    ])]


def profile_suites(spark: SparkSession, lake: Lake, run_date: dt.date) -> list[Suite]:
    profiles = _snapshot(spark, lake, PROFILES, run_date)
    expected = _snapshot(spark, lake, IDENTITY_MAP, run_date).select("profile_id").distinct().count()
    return [Suite("profiles", profiles, [
        gxe.ExpectColumnValuesToNotBeNull(column="profile_id"),
        gxe.ExpectColumnValuesToBeUnique(column="profile_id"),
        gxe.ExpectTableRowCountToEqual(value=expected),
    ])]


def audience_suites(spark: SparkSession, lake: Lake, run_date: dt.date) -> list[Suite]:
    membership = read_table(spark, lake.path(AUDIENCE_MEMBERSHIP), AUDIENCE_MEMBERSHIP.schema).where(
        F.col("run_date") == F.lit(run_date))
    profiles = _snapshot(spark, lake, PROFILES, run_date)
    return [Suite("audience_membership", transform_references(membership, profiles, "profile_id"), [
        gxe.ExpectColumnValuesToNotBeNull(column="parent_found"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["realized", "existing", "exited"]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["audience_id", "profile_id"]),
    ])]


def _snapshot(spark: SparkSession, lake: Lake, table: TableSpec, run_date: dt.date) -> DataFrame:
    return read_table(spark, lake.path(table)).where(F.col("run_date") == F.lit(run_date))


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, stage: Stage) -> list[ExpectationOutcome]:
    """Run the stage's suites, record every outcome, raise if any failed."""
    lake = ctx.lake
    if stage == "ingest":
        suites = ingest_suites(spark, ws, lake, ctx.run_date)
    elif stage == "identities":
        suites = identity_suites(spark, lake, ctx.run_date)
    elif stage == "profiles":
        suites = profile_suites(spark, lake, ctx.run_date)
    else:
        suites = audience_suites(spark, lake, ctx.run_date)
    outcomes = validate_suites(suites)
    rows = [(ctx.run_date, stage, o.suite, o.expectation, o.kwargs, o.success, o.observed) for o in outcomes]
    replace_slice(spark.createDataFrame(rows, QUALITY_RESULTS.schema), lake.path(QUALITY_RESULTS),
                  f"run_date = {date_literal(ctx.run_date)} AND stage = '{stage}'", QUALITY_RESULTS.partition_by)
    raise_on_failure(stage, outcomes)
    return outcomes


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser("Great Expectations gate between two steps of the daily run")
    parser.add_argument("--stage", required=True, choices=STAGES)
    args, ctx, ws = parse_job_args(parser, argv)
    spark = get_session(f"cdp-check-{args.stage}")
    run(spark, ws, ctx, args.stage)


if __name__ == "__main__":
    main()
