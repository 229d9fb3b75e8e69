"""Data-quality gates between the steps (Great Expectations on Spark DataFrames).

``--stage`` picks the gate. Every expectation can fail on data a step could write: checks that Delta
already enforces (NOT NULL columns) or that a step guarantees by construction (uniqueness right after a
deduplicating MERGE) are not run. Gates that compare counts check a column of descriptions the gate
built (``<file>: ...``), so that a failure names the file and the counts.

- ``ingest``, per dataset that has a ledger row for the run date or a table:
  ``<dataset>_files`` (one row per landed file of the run date, from ``batch_ledger``): rows_read =
  rows_valid + rows_quarantined; the file's ``quarantine`` rows = its rows_quarantined; its staged rows
  = its rows_valid; its status is ``ingested`` (or ``ok``, written before ingest marked files),
  ``unreadable`` or ``duplicate`` (``staged`` only for a file with no valid row); a file in staging or
  quarantine has a ledger row. ``<dataset>_volume``: a day whose landed files (duplicates aside) hold
  no valid row fails, and so does a dataset table holding fewer rows than after the previous run
  date's ingest (``run_metrics`` ingest ``rows_total``). ``<dataset>_ingested``: every staged row has
  its key (primary identity or event id) and that key is in the dataset table.
- ``identities``: the identity map of the run date is not empty; each (namespace, value) is in one
  profile; no profile above guardrails.max_identities_per_graph identities nor with two values of a
  unique namespace.
- ``profiles``: one row per profile of the identity map: not empty while identities exist, as many
  rows as the map has profiles, each profile id once and each a profile of the map.
- ``audiences``: a realized / existing membership references a profile of the run date; an exited one
  references a profile of the run date, or its profile is absent and its exit_reason is
  ``profile_removed`` or ``profile_merged`` with ``merged_into`` a profile of the run date or of the
  exit day (status_since: the survivor may have merged on since); statuses and exit reasons are
  known, exit_reason is set exactly on exited rows and merged_into exactly on profile_merged ones; one
  row per (audience, profile). A WARNING (logged, recorded, not failing) when an audience's size
  changed by more than the guardrail ``audience_size_change_warning_share`` since the previous run.

Warnings for the alert channels (:mod:`cdp.monitoring.warnings`, handed to the Airflow task in the job's output
file): at stage ``ingest``, a dataset whose quarantined share is far over its usual one; at stage ``audiences``,
an audience whose size jumped.

Every outcome is written to ``quality_results``, and GX's own Data Docs of the run's suites to the lake's
``quality_docs/`` site (see :mod:`cdp.quality_docs`; a lake on S3 gets none); any failure raises
DataQualityError naming the failed expectations with counts and samples that are hashed (see
:mod:`cdp.quality`) unless they are the gate's own descriptions; the Airflow task fails and the run stops
before the next step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Literal

import great_expectations.expectations as gxe
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp import small_tables
from cdp.datasets import merge_key
from cdp.delta_io import latest_partition_before, read_run_date_slice, read_table, table_exists
from cdp.job import StepKey, run_job
from cdp.lake import (
    AUDIENCE_MEMBERSHIP,
    BATCH_LEDGER,
    DATASET,
    DELIVERY_LEDGER,
    DESTINATION_METRICS,
    EXIT_REASONS,
    EXITED,
    EXPORT_LEDGER,
    EXPORT_PREVIEWS,
    IDENTITY_MAP,
    MEMBERSHIP_STATUSES,
    PROFILE_MERGED,
    PROFILE_REMOVED,
    PROFILES,
    QUALITY_RESULTS,
    QUARANTINE,
    RUN_METRICS,
    STAGING,
    Lake,
)
from cdp.monitoring.warnings import (
    DayCounts,
    RunWarning,
    SizeChange,
    audience_size_warnings,
    quarantine_warnings,
)
from cdp.monitoring.warnings import report as report_warnings
from cdp.quality import ExpectationOutcome, Suite, raise_on_failure, validate_suites
from cdp.quality_docs import docs_target
from cdp.run_context import RunContext, job_parser
from cdp.schemas import BATCH_DATE, SOURCE_FILE
from cdp.workspace.loader import Workspace

log = logging.getLogger(__name__)

# Suites whose failure is a warning (logged and recorded in quality_results) rather than a stop.
AUDIENCE_SIZE_CHANGE = "audience_size_change"
WARNING_SUITES = frozenset({AUDIENCE_SIZE_CHANGE})

Stage = Literal["ingest", "identities", "profiles", "audiences", "exports"]
STAGES: tuple[Stage, ...] = ("ingest", "identities", "profiles", "audiences", "exports")
INGEST_STEP = "ingest"  # run_metrics.step of jobs/ingest.py


# Ledger statuses a file may have once ingest has run: "ok" is what validate wrote before ingest marked
# files "ingested" (both accepted until every lake has been written by the newer steps).
INGESTED_STATUSES = ("ingested", "ok")
SETTLED_STATUSES = ("unreadable", "duplicate")
STAGED_STATUS = "staged"
DUPLICATE_STATUS = "duplicate"


def _problem(condition: Column, message: Column) -> Column:
    """A description when ``condition`` holds, else null (what ExpectColumnValuesToBeNull checks)."""
    return F.when(condition, message)


def _text(*parts: Column | str) -> Column:
    return F.concat(*[p if isinstance(p, Column) else F.lit(p) for p in parts])


def transform_file_checks(ledger: DataFrame, staged: DataFrame, quarantine: DataFrame) -> DataFrame:
    """One row per file of the run date (ledger, staging or quarantine) with a description per failed check.

    ``ledger``: the dataset's batch-ledger rows of the run date; ``staged``: its staging slice
    (``_source_file``); ``quarantine``: its quarantine rows of the run date (``source_file``). Columns:
    ``source_file``, ``count_problem``, ``quarantine_problem``, ``staging_problem``, ``status_problem``
    (null when the check holds).
    """
    staged_rows = staged.groupBy(F.col(SOURCE_FILE).alias("source_file")).agg(F.count(F.lit(1)).alias("staged_rows"))
    quarantine_rows = quarantine.groupBy("source_file").agg(F.count(F.lit(1)).alias("quarantine_rows"))
    files = (ledger.select("source_file", "status", "rows_read", "rows_valid", "rows_quarantined",
                           F.lit(True).alias("_in_ledger"))
             .join(staged_rows, "source_file", "full_outer").join(quarantine_rows, "source_file", "full_outer")
             .fillna(0, subset=["staged_rows", "quarantine_rows"]))
    file = F.col("source_file")
    in_ledger = F.col("_in_ledger").isNotNull()
    status = F.col("status")
    expected_statuses = ", ".join([*INGESTED_STATUSES, *SETTLED_STATUSES])
    return files.select(
        "source_file",
        _problem(in_ledger & (F.col("rows_read") != F.col("rows_valid") + F.col("rows_quarantined")),
                 _text(file, ": rows_read ", F.col("rows_read").cast("string"), " != rows_valid ",
                       F.col("rows_valid").cast("string"), " + rows_quarantined ",
                       F.col("rows_quarantined").cast("string"))).alias("count_problem"),
        _problem(in_ledger & (F.col("quarantine_rows") != F.col("rows_quarantined")),
                 _text(file, ": ", F.col("quarantine_rows").cast("string"), " quarantine row(s), batch_ledger "
                       "rows_quarantined ", F.col("rows_quarantined").cast("string"))).alias("quarantine_problem"),
        _problem(in_ledger & (F.col("staged_rows") != F.col("rows_valid")),
                 _text(file, ": ", F.col("staged_rows").cast("string"), " staged row(s), batch_ledger rows_valid ",
                       F.col("rows_valid").cast("string"))).alias("staging_problem"),
        _problem(~in_ledger, _text(file, ": ", F.col("staged_rows").cast("string"), " staged and ",
                                   F.col("quarantine_rows").cast("string"),
                                   " quarantine row(s) but no batch_ledger row"))
        .when(~(status.isin(*INGESTED_STATUSES, *SETTLED_STATUSES)
                | ((status == STAGED_STATUS) & (F.col("rows_valid") == 0))),
              _text(file, ": batch_ledger status '", status, f"', expected one of {expected_statuses} "
                    "after ingest")).alias("status_problem"),
    )


def transform_volume_checks(ledger: DataFrame, table_rows: int, previous_rows: int | None,
                            previous_day: dt.date | None, deleted: int = 0) -> DataFrame:
    """One row with ``empty_day_problem`` (files landed, duplicates aside, but no valid row) and
    ``shrink_problem`` (the table holds fewer rows than after the previous run date's ingest, beyond the rows
    this day's ingest deleted on purpose: a re-run day whose fixed files no longer hold them)."""
    landed = ledger.where(F.col("status") != DUPLICATE_STATUS).agg(
        F.count(F.lit(1)).alias("files"), F.coalesce(F.sum("rows_valid"), F.lit(0)).alias("rows_valid"))
    shrank = previous_rows is not None and table_rows + deleted < previous_rows
    shrink = (f"the table holds {table_rows} row(s), {previous_rows} after the ingest of {previous_day}"
              + (f" ({deleted} deleted by this day's re-run)" if deleted else "") if shrank else None)
    return landed.select(
        _problem((F.col("files") > 0) & (F.col("rows_valid") == 0),
                 _text(F.col("files").cast("string"), " file(s) landed, 0 valid rows")).alias("empty_day_problem"),
        F.lit(shrink).cast("string").alias("shrink_problem"),
    )


def transform_keys_missing(staged: DataFrame, table: DataFrame, key: str) -> DataFrame:
    """Each staged key with ``missing``: the key when the dataset table does not hold it, else null."""
    present = table.select(F.col(key).alias("_k")).distinct().withColumn("_found", F.lit(True))
    joined = staged.select(key).join(present, staged[key].eqNullSafe(present["_k"]), "left")
    return joined.select(key, F.when(F.col("_found").isNull(), F.col(key)).alias("missing"))


def rows_deleted(spark: SparkSession, lake: Lake, dataset: str, run_date: dt.date) -> int:
    """The rows the run date's ingest deleted (a re-run whose fixed files no longer hold them)."""
    row = read_table(spark, lake.path(RUN_METRICS), RUN_METRICS.schema).where(
        (F.col("run_date") == F.lit(run_date)) & (F.col("step") == INGEST_STEP) & (F.col("scope") == dataset)
        & (F.col("metric") == "rows_deleted")).agg(F.max("value").alias("n")).first()
    return 0 if row is None or row["n"] is None else int(row["n"])


def previous_table_rows(spark: SparkSession, lake: Lake, dataset: str,
                        run_date: dt.date) -> tuple[int | None, dt.date | None]:
    """The dataset table's rows after the ingest of the latest run date before ``run_date`` (run_metrics)."""
    metrics = read_table(spark, lake.path(RUN_METRICS), RUN_METRICS.schema).where(
        (F.col("step") == INGEST_STEP) & (F.col("scope") == dataset) & (F.col("metric") == "rows_total"))
    previous_day = latest_partition_before(metrics, "run_date", run_date)
    if previous_day is None:
        return None, None
    row = metrics.where(F.col("run_date") == F.lit(previous_day)).agg(F.max("value").alias("n")).first()
    return (None if row is None or row["n"] is None else int(row["n"])), previous_day


def ingest_suites(spark: SparkSession, ws: Workspace, lake: Lake, run_date: dt.date) -> list[Suite]:
    """Per dataset: the files reconcile with the ledger, the volumes are plausible, staged keys are ingested."""
    suites: list[Suite] = []
    ledger_all = read_table(spark, lake.path(BATCH_LEDGER), BATCH_LEDGER.schema).where(
        F.col("batch_date") == F.lit(run_date))
    quarantine_all = read_table(spark, lake.path(QUARANTINE), QUARANTINE.schema).where(
        F.col("batch_date") == F.lit(run_date))
    for dataset in sorted(ws.datasets.values(), key=lambda d: d.name):
        key = merge_key(ws.schemas[dataset.schema_])
        ledger = ledger_all.where(F.col("dataset") == dataset.name)
        staging_path = lake.path(STAGING, dataset.name)
        table_path = lake.path(DATASET, dataset.name)
        has_table = table_exists(spark, table_path)
        if ledger.limit(1).count() == 0 and not has_table:
            continue  # nothing ever landed for this dataset: nothing to check
        staged = (read_table(spark, staging_path).where(F.col(BATCH_DATE) == F.lit(run_date))
                  if table_exists(spark, staging_path) else None)
        staged_files = (staged.select(SOURCE_FILE) if staged is not None
                        else spark.createDataFrame([], f"{SOURCE_FILE} string"))
        files = transform_file_checks(ledger, staged_files, quarantine_all.where(F.col("dataset") == dataset.name))
        suites.append(Suite(f"{dataset.name}_files", files, [
            gxe.ExpectColumnValuesToBeNull(column=c)
            for c in ("count_problem", "quarantine_problem", "staging_problem", "status_problem")], samples="plain"))
        table_rows = read_table(spark, table_path).count() if has_table else 0
        previous_rows, previous_day = previous_table_rows(spark, lake, dataset.name, run_date)
        suites.append(Suite(f"{dataset.name}_volume",
                            transform_volume_checks(ledger, table_rows, previous_rows, previous_day,
                                                    rows_deleted(spark, lake, dataset.name, run_date)), [
            gxe.ExpectColumnValuesToBeNull(column="empty_day_problem"),
            gxe.ExpectColumnValuesToBeNull(column="shrink_problem"),
        ], samples="plain"))
        if staged is not None and has_table:
            suites.append(Suite(f"{dataset.name}_ingested", transform_keys_missing(staged, read_table(
                spark, table_path), key), [
                gxe.ExpectColumnValuesToNotBeNull(column=key),
                gxe.ExpectColumnValuesToBeNull(column="missing"),
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
    """The identity map is not empty, one profile per identity, collapse protection held."""
    identities = read_run_date_slice(spark, lake, IDENTITY_MAP, run_date, absent_as_empty=True)
    per_profile = transform_profile_identity_counts(identities, unique_namespaces)
    return [Suite("identity_map", identities, [
        # An empty map would let every later gate pass on nothing: no profile, no audience, no export.
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["namespace", "value"]),
    ]), Suite("identity_graphs", per_profile, [
        # Collapse protection held: no person above the cap, none with two values of a unique namespace.
        gxe.ExpectColumnValuesToBeBetween(column="identities", max_value=max_identities),
        *[gxe.ExpectColumnValuesToBeBetween(column=f"unique_{ns}", max_value=1)
          for ns in sorted(unique_namespaces)],
    ], samples="plain")]  # counts only


def profile_suites(spark: SparkSession, lake: Lake, run_date: dt.date) -> list[Suite]:
    """One profiles row per profile of the identity map."""
    profiles = read_run_date_slice(spark, lake, PROFILES, run_date)
    mapped = read_run_date_slice(spark, lake, IDENTITY_MAP, run_date, absent_as_empty=True).select(
        "profile_id").distinct()
    expected = mapped.count()
    checked = profiles.select("profile_id").join(mapped.withColumn("_mapped", F.lit(True)), "profile_id", "left")
    expectations: list[Any] = []
    if expected > 0:
        expectations.append(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    expectations += [
        gxe.ExpectTableRowCountToEqual(value=expected),
        gxe.ExpectColumnValuesToBeUnique(column="profile_id"),
        gxe.ExpectColumnValuesToBeNull(column="unmapped"),
    ]
    return [Suite("profiles", checked.select(
        "profile_id", F.when(F.col("_mapped").isNull(), F.col("profile_id")).alias("unmapped")), expectations)]


def transform_membership_checks(membership: DataFrame, profiles: DataFrame) -> DataFrame:
    """The membership rows with ``reference_problem`` and ``exit_problem`` (null when the row is right).

    ``profiles`` holds (run_date, profile_id) for the run date and for every exit day (status_since) of
    the rows; a row's profile is looked up on the membership's run date, its merged_into on the run date
    and on its exit day.
    """
    def found(day: str, profile: str, flag: str) -> tuple[DataFrame, Column]:
        ids = profiles.select(F.col("run_date").alias(f"{flag}_day"), F.col("profile_id").alias(f"{flag}_id"),
                              F.lit(True).alias(flag))
        return ids, (F.col(f"{flag}_day") == F.col(day)) & (F.col(f"{flag}_id") == F.col(profile))

    m = membership
    for day, profile, flag in (("run_date", "profile_id", "_present"), ("run_date", "merged_into", "_into_today"),
                               ("status_since", "merged_into", "_into_exit")):
        ids, on = found(day, profile, flag)
        m = m.join(ids, on, "left")
    present = F.col("_present").isNotNull()
    exited = F.col("status") == EXITED
    reason = F.col("exit_reason")
    into_found = F.col("_into_today").isNotNull() | F.col("_into_exit").isNotNull()
    where = _text(F.col("audience_id"), ": ", F.col("status"), " membership")
    reference = (
        F.when(~exited & ~present, _text(where, " of a profile absent on the run date"))
        .when(exited & ~present & ~F.coalesce(reason.isin(PROFILE_MERGED, PROFILE_REMOVED), F.lit(False)),
              _text(where, " of a profile absent on the run date with exit_reason ",
                    F.coalesce(reason, F.lit("null")), f" (expected {PROFILE_MERGED} or {PROFILE_REMOVED})"))
        .when(exited & ~present & (reason == PROFILE_MERGED) & ~into_found,
              _text(where, " merged into a profile absent on the run date and on its exit day ",
                    F.col("status_since").cast("string"))))
    exit_problem = (
        F.when(~exited & reason.isNotNull(), _text(where, " with exit_reason ", reason, " (only exited rows have one)"))
        .when(exited & reason.isNotNull() & ~reason.isin(*EXIT_REASONS),
              _text(where, " with unknown exit_reason ", reason))
        .when((reason == PROFILE_MERGED) & F.col("merged_into").isNull(),
              _text(where, " profile_merged without merged_into"))
        .when(~F.coalesce(reason == PROFILE_MERGED, F.lit(False)) & F.col("merged_into").isNotNull(),
              _text(where, " with merged_into but exit_reason ", F.coalesce(reason, F.lit("null")))))
    return m.select("audience_id", "profile_id", "status", reference.alias("reference_problem"),
                    exit_problem.alias("exit_problem"))


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


def audience_suites(spark: SparkSession, lake: Lake, run_date: dt.date, size_change_share: float = 0.5,
                    warnings: list[RunWarning] | None = None) -> list[Suite]:
    """Memberships reference profiles as the module docstring says; the size-change warning (also appended to
    ``warnings``, for the alert channels)."""
    history = read_table(spark, lake.path(AUDIENCE_MEMBERSHIP), AUDIENCE_MEMBERSHIP.schema)
    for f in AUDIENCE_MEMBERSHIP.schema.fields if AUDIENCE_MEMBERSHIP.schema else []:
        if f.name not in history.columns:  # a table written before the column existed reads it as null
            history = history.withColumn(f.name, F.lit(None).cast(f.dataType))
    membership = history.where(F.col("run_date") == F.lit(run_date))
    exit_days = [r["status_since"] for r in membership.where(F.col("merged_into").isNotNull())
                 .select("status_since").distinct().collect()]
    days = sorted({run_date, *exit_days})
    profiles = read_table(spark, lake.path(PROFILES)).where(F.col("run_date").isin(*days)).select(
        "run_date", "profile_id")
    suites = [Suite("audience_membership", transform_membership_checks(membership, profiles), [
        gxe.ExpectColumnValuesToBeNull(column="reference_problem"),
        gxe.ExpectColumnValuesToBeNull(column="exit_problem"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(MEMBERSHIP_STATUSES)),
    ], samples="plain"), Suite("audience_membership_keys", membership, [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["audience_id", "profile_id"]),
    ])]
    previous_day = latest_partition_before(history, "run_date", run_date)
    if previous_day is not None:
        previous = history.where(F.col("run_date") == F.lit(previous_day))
        changes = transform_size_changes(membership, previous)
        # One row per audience: small. Logged per audience so the task log says which one moved.
        sizes = changes.orderBy("audience_id").collect()
        for row in sizes:
            if row["change_share"] is not None and row["change_share"] > size_change_share:
                log.warning("audience %s: size changed from %d on %s to %d (%.0f%% > %.0f%%)", row["audience_id"],
                            row["previous_size"], previous_day, row["size"], 100 * row["change_share"],
                            100 * size_change_share)
        if warnings is not None:
            warnings += audience_size_warnings(
                [SizeChange(r["audience_id"], int(r["previous_size"]), int(r["size"])) for r in sizes],
                run_date, previous_day, size_change_share)
        suites.append(Suite(AUDIENCE_SIZE_CHANGE, changes, [
            gxe.ExpectColumnValuesToBeBetween(column="change_share", min_value=0.0, max_value=size_change_share),
        ], samples="plain"))  # shares only
    return suites


def transform_export_reconciliation(metrics: DataFrame, ledger: DataFrame) -> DataFrame:
    """Per destination of the run date: ``count_problem`` when received != activated + excluded + failed, and
    ``rows_problem`` when the rows of its delivered data files (export_ledger) differ from what it activated."""
    delivered = (ledger.where((F.col("kind") == "data") & (F.col("status") == "delivered"))
                 .groupBy("destination").agg(F.sum("rows").alias("delivered_rows")))
    joined = metrics.join(delivered, "destination", "left").withColumn(
        "delivered_rows", F.coalesce(F.col("delivered_rows"), F.lit(0)))
    excluded = F.aggregate(F.map_values(F.col("excluded")), F.lit(0).cast("long"), lambda a, b: a + b)
    name = F.col("destination")
    return joined.select(
        "destination",
        _problem(F.col("received") != F.col("activated") + excluded + F.col("failed"),
                 _text(name, ": received ", F.col("received").cast("string"), " != activated ",
                       F.col("activated").cast("string"), " + excluded ", excluded.cast("string"), " + failed ",
                       F.col("failed").cast("string"))).alias("count_problem"),
        _problem(F.col("activated") != F.col("delivered_rows"),
                 _text(name, ": activated ", F.col("activated").cast("string"), " but the delivered files hold ",
                       F.col("delivered_rows").cast("string"), " row(s)")).alias("rows_problem"))


def export_suites(spark: SparkSession, lake: Lake, run_date: dt.date) -> list[Suite]:
    """Every destination's counts reconcile, and its delivered files hold exactly the rows it activated."""
    metrics = read_run_date_slice(spark, lake, DESTINATION_METRICS, run_date, absent_as_empty=True)
    ledger = read_run_date_slice(spark, lake, EXPORT_LEDGER, run_date, absent_as_empty=True)
    # Streaming destinations: the messages acknowledged in the delivery ledger stand for the delivered rows.
    acknowledged = read_run_date_slice(spark, lake, DELIVERY_LEDGER, run_date, absent_as_empty=True).where(
        F.col("status") == "delivered").groupBy("destination").count().select(
        "destination", F.lit("data").alias("kind"), F.lit("delivered").alias("status"), F.col("count").alias("rows"))
    ledger = ledger.select("destination", "kind", "status", "rows").unionByName(acknowledged)
    return [Suite("destination_counts", transform_export_reconciliation(metrics, ledger), [
        gxe.ExpectColumnValuesToBeNull(column="count_problem"),
        gxe.ExpectColumnValuesToBeNull(column="rows_problem"),
    ], samples="plain")]  # counts and destination names only


def export_preview_suites(spark: SparkSession, lake: Lake, run_date: dt.date) -> list[Suite]:
    """A dry run's previews reconcile like real exports: received = activated + excluded + failed, and the data
    files a file destination would receive hold exactly the rows it would activate."""
    previews = read_run_date_slice(spark, lake, EXPORT_PREVIEWS, run_date, absent_as_empty=True)
    files = previews.where(F.col("type").isin(*STREAMING_TYPES) == F.lit(False)).select(
        "destination", F.explode("file_list").alias("f")).select(
        "destination", F.col("f.kind").alias("kind"), F.lit("delivered").alias("status"), F.col("f.rows").alias("rows"))
    messages = previews.where(F.col("type").isin(*STREAMING_TYPES)).select(
        "destination", F.lit("data").alias("kind"), F.lit("delivered").alias("status"), F.col("rows"))
    return [Suite("destination_counts", transform_export_reconciliation(
        previews.select("destination", "received", "activated", "excluded", "failed"), files.unionByName(messages)), [
        gxe.ExpectColumnValuesToBeNull(column="count_problem"),
        gxe.ExpectColumnValuesToBeNull(column="rows_problem"),
    ], samples="plain")]  # counts and destination names only


# The stage under which a dry run's export gate records its outcomes: never those of the real exports.
PREVIEW_STAGE = "export_previews"
STREAMING_TYPES = ("http", "kafka", "kinesis")


def quarantine_history(spark: SparkSession, lake: Lake, run_date: dt.date) -> dict[str, list[DayCounts]]:
    """Each dataset's records read and quarantined per run date up to ``run_date`` (``batch_ledger``): one row
    per dataset and day, small."""
    ledger = read_table(spark, lake.path(BATCH_LEDGER), BATCH_LEDGER.schema).where(F.col("batch_date") <= run_date)
    rows = ledger.groupBy("dataset", "batch_date").agg(F.sum("rows_read").alias("read"),
                                                       F.sum("rows_quarantined").alias("quarantined")).collect()
    history: dict[str, list[DayCounts]] = {}
    for r in rows:
        history.setdefault(r["dataset"], []).append(DayCounts(r["batch_date"], int(r["read"]), int(r["quarantined"])))
    return history


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, stage: Stage, dry_run: bool = False
        ) -> list[ExpectationOutcome]:
    """Run the stage's suites, record every outcome, report the warnings (alert channels), raise if any failed.

    ``dry_run`` (stage exports only): check the run date's ``export_previews`` instead of what was delivered,
    recorded as stage ``export_previews``.
    """
    lake = ctx.lake
    warnings: list[RunWarning] = []
    recorded: str = stage
    if dry_run and stage != "exports":
        raise ValueError(f"--dry-run applies to the stage exports only, not {stage}")
    if dry_run:
        suites = export_preview_suites(spark, lake, ctx.run_date)
        recorded = PREVIEW_STAGE
    elif stage == "ingest":
        suites = ingest_suites(spark, ws, lake, ctx.run_date)
        warnings = quarantine_warnings(quarantine_history(spark, lake, ctx.run_date), ctx.run_date,
                                       ws.config.guardrails)
    elif stage == "identities":
        suites = identity_suites(spark, lake, ctx.run_date, ws.config.guardrails.max_identities_per_graph,
                                 [code for code, ns in ws.namespaces.items() if ns.unique])
    elif stage == "profiles":
        suites = profile_suites(spark, lake, ctx.run_date)
    elif stage == "audiences":
        suites = audience_suites(spark, lake, ctx.run_date, ws.config.guardrails.audience_size_change_warning_share,
                                 warnings)
    else:
        suites = export_suites(spark, lake, ctx.run_date)
    outcomes = validate_suites(suites, docs_target(lake.root, ctx.run_date, recorded,
                                                   ws.config.maintenance.quality_docs_days))
    rows = [(ctx.run_date, recorded, o.suite, o.expectation, o.kwargs, o.success, o.observed) for o in outcomes]
    small_tables.replace_rows(lake.path(QUALITY_RESULTS), QUALITY_RESULTS, rows,
                              {"run_date": ctx.run_date, "stage": recorded})
    # Warning suites are recorded and logged, never stop the run: a size swing may be real (a campaign).
    for o in outcomes:
        if o.suite in WARNING_SUITES and not o.success:
            log.warning("data-quality warning at stage '%s': %s", stage, o.describe())
    report_warnings(warnings)
    raise_on_failure(recorded, [o for o in outcomes if o.suite not in WARNING_SUITES])
    return outcomes


# The step whose output each gate checks: it must have committed the run date.
CHECKED_STEPS = {"identities": "resolve_identities", "profiles": "build_profiles", "audiences": "evaluate_audiences"}


def checked_steps(stage: str, ws: Workspace) -> list[StepKey]:
    """The steps whose output the gate of ``stage`` reads."""
    if stage == "ingest":
        return [StepKey("ingest", name) for name in sorted(ws.datasets)]
    if stage == "exports":
        return []  # it checks whatever the exports recorded, a failed destination included
    return [StepKey(CHECKED_STEPS[stage])]


def main(argv: Sequence[str] | None = None) -> None:
    parser = job_parser("Great Expectations gate between two steps of the daily run")
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--dry-run", action="store_true",
                        help="stage exports: check the dry run's export_previews instead of the deliveries")

    def gate(spark: SparkSession, ws: Workspace, ctx: RunContext, args: argparse.Namespace) -> None:
        run(spark, ws, ctx, args.stage, args.dry_run)

    given = parser.parse_known_args(argv)[0]
    if given.dry_run and given.stage != "exports":
        parser.error(f"--dry-run applies to --stage exports only, not {given.stage}")

    run_job(parser, argv, lambda args: StepKey(f"check_{args.stage}"), gate,
            requires=lambda args, ws: checked_steps(args.stage, ws), record=False)


if __name__ == "__main__":
    main()
