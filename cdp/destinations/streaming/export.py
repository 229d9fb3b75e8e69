"""One run of a streaming destination (http, kafka, kinesis): changes, delivery from the executors, ledger, metrics.

1. Acknowledgements journalled by a killed earlier attempt of the run date are folded into the ledger.
2. The changes (:mod:`.changes`) against the state last acknowledged before the run date are computed and
   written once to a scratch folder (so every later step reads the same snapshot); changes already
   recorded for the run date by an earlier attempt (same message id) are not sent again.
3. A change that failed on earlier run dates for longer than ``retry.give_up_after_days`` is given up.
4. The others are sent from Spark's executors (``mapInArrow``: each partition batches, rate-limits,
   retries and journals its acknowledgements; only one row per message comes back, written by Spark, never
   collected), partitioned by profile id.
5. The ledger gets the delivered, excluded and given-up messages; ``delivery_failures`` the others;
   ``destination_metrics`` the counts (received = activated + excluded + failed), failures by error class
   and the latency from the end of audience evaluation to acknowledgement (p50, p95).

A destination that stays unreachable (retries exhausted on network errors, timeouts, 429, 5xx) fails its
task after the metrics are written, so Airflow retries it; the retry sends only what is not acknowledged.
Records the endpoint refuses (other 4xx, record errors) do not fail the task: they are retried by later runs.

A dry run (:func:`preview`) computes and classifies the changes the same way (2 and 3, read-only), writes the
messages it would send into the lake's preview folder and records the counts in ``export_previews``: no
connection is opened, and neither the ledger nor the journal is touched.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from cdp import small_tables
from cdp.delta_io import read_run_date_slice
from cdp.destinations import ledger as file_ledger
from cdp.destinations.preview import Preview, fresh_preview_folder, record_preview
from cdp.destinations.rows import MappingContext
from cdp.destinations.streaming import ledger
from cdp.destinations.streaming.changes import (
    MEMBERSHIPS,
    MESSAGE_ID,
    PAYLOAD,
    PREVIOUS_MEMBERSHIPS,
    PROFILE,
    REASON,
    SIGNATURE,
    STATE_JSON,
    STREAMING_EXCLUSION_REASONS,
    RunInfo,
    transform_changes,
)
from cdp.destinations.streaming.delivery import (
    DELIVERED,
    DeliveryPolicy,
    Journal,
    Message,
    Result,
    Sender,
    deliver_partition,
)
from cdp.destinations.streaming.endpoint import ConnectionInfo, resolve_connection
from cdp.errors import DestinationError
from cdp.governance.consent import purpose_attributes
from cdp.governance.policies import enforce as enforce_policies
from cdp.lake import AUDIENCE_MEMBERSHIP, PROFILES, STEP_RUNS, Lake
from cdp.run_context import RunContext
from cdp.spark import default_parallelism
from cdp.workspace.loader import Workspace
from cdp.workspace.models import HttpDestination, KafkaDestination, KinesisDestination, StreamingDestination

log = logging.getLogger(__name__)

# One row per message sent, as the executors return it. What the ledger keeps of a message (signature, state,
# memberships) never passes through Python: it is joined back from the snapshot by message id.
RESULT_SCHEMA = T.StructType([
    T.StructField("message_id", T.StringType(), False),
    T.StructField("profile_id", T.StringType(), False),
    T.StructField("status", T.StringType(), False),
    T.StructField("error_class", T.StringType(), True),
    T.StructField("http_status", T.IntegerType(), True),
    T.StructField("response", T.StringType(), True),
    T.StructField("attempts", T.IntegerType(), False),
    T.StructField("acknowledged_at", T.DoubleType(), True),
    T.StructField("bytes", T.LongType(), False),
])
RESULT_ARROW_SCHEMA = to_arrow_schema(RESULT_SCHEMA)
RESULT_BATCH = 1000
# The journal line of a message, less its bytes and acknowledgement time (ledger.JOURNAL_SCHEMA), built by Spark.
JOURNAL = "__journal"
# Errors a retry of the task may fix: the endpoint was unreachable or overloaded until the retries ran out.
UNREACHABLE_PREFIXES = ("timeout", "connection_error", "http_5", "http_429", "http_408", "oauth2_token_unreachable",
                        "kafka__", "kinesis_ProvisionedThroughput", "kinesis_InternalFailure")


@dataclass(frozen=True)
class SendPlan:
    """What each executor task needs to send its partition (pickled into the task: secrets stay in memory)."""

    dest: StreamingDestination
    conn: ConnectionInfo
    policy: DeliveryPolicy
    journal: str | None
    run_id: str
    attempt: str


def open_sender(dest: StreamingDestination, conn: ConnectionInfo) -> Sender:
    """The sender of a destination's type."""
    if isinstance(dest, HttpDestination):
        from cdp.destinations.streaming.http import HttpSender

        return HttpSender(dest, conn)
    if isinstance(dest, KafkaDestination):
        from cdp.destinations.streaming.kafka import KafkaSender

        return KafkaSender(dest, conn)
    if isinstance(dest, KinesisDestination):
        from cdp.destinations.streaming.kinesis import KinesisSender

        return KinesisSender(dest, conn)
    raise DestinationError(f"destination {dest.name}: no sender for type {dest.type_name}")


def journal_column(run_id: str) -> Column:
    """The JSON object a delivered message's journal line starts with (:data:`ledger.JOURNAL_SCHEMA` less
    ``bytes`` and ``acknowledged_at``, which only the send knows); memberships as ISO UTC times."""
    iso = F.transform_values(MEMBERSHIPS, lambda _k, v: F.date_format(v, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"))
    return F.to_json(F.struct(MESSAGE_ID, PROFILE, SIGNATURE, STATE_JSON, iso.alias("memberships"),
                              F.lit(run_id).alias("run_id")))


def _journal_line(r: Result) -> str:
    kept = r.message.journal or "{}"
    return f'{kept[:-1]},"bytes":{len(r.message.payload)},"acknowledged_at":{r.acknowledged_at!r}}}'


def _result_batch(rows: list[tuple[object, ...]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, RESULT_ARROW_SCHEMA,
                                                                                 strict=True)],
                                      schema=RESULT_ARROW_SCHEMA)


def send_partition(plan: SendPlan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executor side (``mapInArrow``): send one partition's messages, in order, and yield one RESULT_SCHEMA row
    per message, in Arrow batches of at most :data:`RESULT_BATCH` rows.

    The per-message work in Python is kept to what sending needs: columns are read whole from Arrow, the
    journal line comes pre-built from Spark, results go back column by column.
    """
    task = TaskContext.get()
    name = f"part-{task.partitionId() if task else 0:05d}-{plan.attempt}-{task.attemptNumber() if task else 0}.jsonl"
    journal = Journal(plan.journal, name)

    def messages() -> Iterator[Message]:
        for batch in batches:
            columns = [batch.column(n).to_pylist() for n in (MESSAGE_ID, PROFILE, PAYLOAD, JOURNAL)]
            for message_id, profile_id, payload, kept in zip(*columns, strict=True):
                yield Message(message_id, profile_id, payload, kept)

    out: list[tuple[object, ...]] = []
    try:
        sender = open_sender(plan.dest, plan.conn)
        for r in deliver_partition(sender, messages(), plan.policy,
                                   on_delivered=lambda done: journal.record([_journal_line(d) for d in done])):
            problem = r.problem
            if problem is None:
                out.append((r.message.message_id, r.message.profile_id, r.status, None, None, None, r.attempts,
                            r.acknowledged_at, len(r.message.payload)))
            else:
                out.append((r.message.message_id, r.message.profile_id, r.status, problem.error_class,
                            problem.http_status, problem.response, r.attempts, r.acknowledged_at,
                            len(r.message.payload)))
            if len(out) >= RESULT_BATCH:
                yield _result_batch(out)
                out = []
        if out:
            yield _result_batch(out)
    finally:
        journal.close()


def delivery_policy(dest: StreamingDestination, partitions: int) -> DeliveryPolicy:
    """The destination's batching and retries; its rate limit shared evenly by the partitions sending at once."""
    rate = None if dest.rate_limit is None else dest.rate_limit / max(1, partitions)
    return DeliveryPolicy(max_messages=dest.batching.max_messages, max_seconds=dest.batching.max_seconds,
                          rate_per_second=rate, attempts=dest.retry.attempts,
                          initial_wait=dest.retry.initial_wait_seconds, max_wait=dest.retry.max_wait_seconds)


def evaluation_end(lake: Lake, run_date: dt.date) -> float | None:
    """When audience evaluation committed the run date (step_runs), in epoch seconds: where latency starts."""
    ends = [row["updated_at"].timestamp() for row in small_tables.read_rows(
        lake.path(STEP_RUNS), {"run_date": run_date, "step": "evaluate_audiences"}) if row["status"] == "committed"]
    return max(ends) if ends else None


def send_partitions() -> int:
    """How many partitions send at once: ``CDP_STREAM_PARTITIONS``, else Spark's default parallelism."""
    return int(os.environ.get("CDP_STREAM_PARTITIONS", "0"))


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, dest: StreamingDestination,
        full_resync: bool = False) -> dict[str, int]:
    """Deliver the destination's changes for the run date; return the counts recorded in destination_metrics."""
    # Usage policies against the workspace as loaded now, before the connection is opened or anything read.
    enforce_policies(ws, dest.name)
    conn = resolve_connection(dest.connection)
    ledger.fold_journal(spark, ctx.lake, dest.name, ctx.run_date)
    scratch = os.path.join(ctx.settings.lake, "_stream_scratch", dest.name, ctx.run_date.isoformat())
    try:
        classified, mode, base = classify(spark, ws, ctx, dest, full_resync, scratch)
        return _deliver(spark, ctx, dest, conn, classified, scratch, mode, base)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def classify(spark: SparkSession, ws: Workspace, ctx: RunContext, dest: StreamingDestination, full_resync: bool,
             scratch: str) -> tuple[DataFrame, str, dt.date | None]:
    """The run date's changes (written once under ``scratch``), each with what an earlier attempt of the day
    recorded (``__done``) and whether it is given up (``__given_up``); the mode and the base run date. Reads the
    ledger and the failures, writes only under ``scratch``."""
    lake = ctx.lake
    shutil.rmtree(scratch, ignore_errors=True)
    rows = ledger.history(spark, lake, dest.name)
    acknowledged = ledger.acknowledged_state(rows, ctx.run_date).persist()
    base_row = rows.where(F.col("run_date") < F.lit(ctx.run_date)).agg(F.max("run_date").alias("d")).first()
    base = None if base_row is None else base_row["d"]
    mode = "resync" if full_resync else ("full" if base is None else "incremental")
    mapping = MappingContext(ws.profile_attributes(), ws.namespaces, text_only=False,
                             consent_attributes=purpose_attributes(ws))
    members = read_run_date_slice(spark, lake, AUDIENCE_MEMBERSHIP, ctx.run_date, absent_as_empty=True)
    profiles = read_run_date_slice(spark, lake, PROFILES, ctx.run_date)
    info = RunInfo(dest.name, ctx.run_date, ctx.run_id, resync=full_resync)
    changes = transform_changes(members, profiles, acknowledged.drop("last_run_date"), dest, mapping, info)
    today = rows.where(F.col("run_date") == F.lit(ctx.run_date)).select(
        MESSAGE_ID, F.col("status").alias("__done"), F.col("bytes").alias("__done_bytes"),
        F.col("acknowledged_at").alias("__done_at"))
    last_row = acknowledged.select(PROFILE, "last_run_date")
    failures = ledger.failures_before(spark, lake, dest.name, ctx.run_date)
    pending_since = (failures.join(last_row, PROFILE, "left")
                     .where(F.col("last_run_date").isNull() | (F.col("failed_run_date") > F.col("last_run_date")))
                     .groupBy(PROFILE).agg(F.min("first_failed_run_date").alias("__first_failed")))
    give_up = F.lit(ctx.run_date) >= F.date_add(F.col("__first_failed"), dest.retry.give_up_after_days)
    # One snapshot, written once: the ledger is written below, and neither the changes nor what an earlier
    # attempt recorded today may be recomputed from it.
    try:
        (changes.join(today, MESSAGE_ID, "left").join(pending_since, PROFILE, "left")
         .withColumn("__given_up",
                     F.col(REASON).isNull() & F.col("__done").isNull() & F.coalesce(give_up, F.lit(False)))
         .write.parquet(os.path.join(scratch, "classified")))
    finally:
        acknowledged.unpersist()
    return spark.read.parquet(os.path.join(scratch, "classified")), mode, base


def preview(spark: SparkSession, ws: Workspace, ctx: RunContext, dest: StreamingDestination,
            full_resync: bool = False) -> dict[str, int]:
    """A dry run of :func:`run`: the messages it would send now written to ``<preview folder>/messages/`` (one
    JSON payload a line, ordered by profile id), the counts recorded in ``export_previews``. Opens no connection
    and writes no ledger, journal or destination_metrics (an earlier attempt's journal, folded by the real run,
    is not read: its messages count as still to send)."""
    enforce_policies(ws, dest.name)
    folder = fresh_preview_folder(ctx.settings.lake, ctx.run_date, dest.name)
    scratch = os.path.join(folder, ".work")
    try:
        classified, mode, base = classify(spark, ws, ctx, dest, full_resync, scratch)
        to_send = classified.where(F.col(REASON).isNull() & F.col("__done").isNull() & ~F.col("__given_up"))
        to_send.orderBy(PROFILE, MESSAGE_ID).select(PAYLOAD).coalesce(1).write.text(os.path.join(folder, "messages"))
        done = F.col("__done") == ledger.DELIVERED
        row = classified.agg(
            F.count(F.lit(1)).alias("received"),
            *[F.sum(F.when(F.col(REASON) == r, 1).otherwise(0)).alias(f"excluded.{r}")
              for r in STREAMING_EXCLUSION_REASONS],
            F.sum(F.when(done, 1).otherwise(0)).alias("done"),
            F.sum(F.when(done, F.col("__done_bytes")).otherwise(0)).alias("done_bytes"),
            F.sum(F.when(F.col("__given_up") | (F.col("__done") == ledger.GIVEN_UP), 1).otherwise(0)).alias("given_up"),
            F.sum(F.when(F.col(REASON).isNull() & F.col("__done").isNull() & ~F.col("__given_up"), 1).otherwise(0))
            .alias("send"),
            F.sum(F.when(F.col(REASON).isNull() & F.col("__done").isNull() & ~F.col("__given_up"),
                         F.octet_length(PAYLOAD)).otherwise(0)).alias("send_bytes"),
        ).first()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert row is not None
    excluded = {r: int(row[f"excluded.{r}"] or 0) for r in STREAMING_EXCLUSION_REASONS}
    done_count, send = int(row["done"] or 0), int(row["send"] or 0)
    result = Preview(dest.name, ctx.run_date, ctx.run_id, dest.type_name, mode, base, int(row["received"]),
                     done_count + send, excluded, int(row["given_up"] or 0), [], done_count + send,
                     int(row["done_bytes"] or 0) + int(row["send_bytes"] or 0), send, done_count, folder)
    record_preview(ctx.lake, result)
    log.info("dry run of destination %s (%s, %s): %d received, %d activated, %s excluded, %d given up; %d "
             "message(s) would be sent (%d already acknowledged), %d bytes; nothing sent, preview in %s",
             dest.name, dest.type_name, mode, result.received, result.activated, excluded, result.failed, send,
             done_count, result.bytes, folder)
    return result.metrics()


def _deliver(spark: SparkSession, ctx: RunContext, dest: StreamingDestination, conn: ConnectionInfo,
             classified: DataFrame, scratch: str, mode: str, base: dt.date | None) -> dict[str, int]:
    lake = ctx.lake
    d = F.lit(ctx.run_date)
    keep: list[Column | str] = [F.lit(dest.name).alias("destination"), d.alias("run_date"), MESSAGE_ID, PROFILE]
    # Excluded and given-up changes enter the ledger too (the receiver's memberships unchanged), so that
    # they are reconsidered only when the profile changes again. Those an earlier attempt of the day recorded
    # (``__done``) are there already: every row appended is a message id the ledger does not hold for the day.
    settled = classified.where((F.col(REASON).isNotNull() & F.col("__done").isNull()) | F.col("__given_up")).select(
        *keep, F.when(F.col(REASON).isNotNull(), F.lit(ledger.EXCLUDED)).otherwise(F.lit(ledger.GIVEN_UP))
        .alias("status"), SIGNATURE, STATE_JSON, F.col(PREVIOUS_MEMBERSHIPS).alias("memberships"),
        F.lit(0).cast("long").alias("bytes"), F.lit(ctx.run_id).alias("run_id"),
        F.lit(None).cast("timestamp").alias("acknowledged_at"))
    if not settled.isEmpty():
        ledger.append(spark, lake, settled)

    to_send = classified.where(F.col(REASON).isNull() & F.col("__done").isNull() & ~F.col("__given_up"))
    partitions = send_partitions() or default_parallelism(spark)
    plan = SendPlan(dest, conn, delivery_policy(dest, partitions), ledger.journal_folder(lake, dest.name, ctx.run_date),
                    ctx.run_id, uuid.uuid4().hex[:12])
    started = time.monotonic()
    # The payload as bytes, so that executors send what Arrow hands them without encoding it again.
    ordered = to_send.select(MESSAGE_ID, PROFILE, F.col(PAYLOAD).cast("binary").alias(PAYLOAD),
                             journal_column(ctx.run_id).alias(JOURNAL)).repartition(
        partitions, PROFILE).sortWithinPartitions(PROFILE)
    results_path = os.path.join(scratch, "results")
    # The one action that sends: its rows are written once by Spark and read back, never recomputed (a
    # recomputation would send again).
    ordered.mapInArrow(partial(send_partition, plan), RESULT_SCHEMA).write.parquet(results_path)
    sent_in = time.monotonic() - started
    results = spark.read.parquet(results_path).persist()
    try:
        kept = classified.select(MESSAGE_ID, SIGNATURE, STATE_JSON, MEMBERSHIPS)
        acknowledged = results.where(F.col("status") == DELIVERED)
        delivered = acknowledged.join(kept, MESSAGE_ID).select(
            *keep, F.lit(ledger.DELIVERED).alias("status"), SIGNATURE, STATE_JSON, MEMBERSHIPS, "bytes",
            F.lit(ctx.run_id).alias("run_id"), F.timestamp_seconds("acknowledged_at").alias("acknowledged_at"))
        if not acknowledged.isEmpty():
            ledger.append(spark, lake, delivered)  # only messages not recorded for the day were sent
        ledger.remove_journal(lake, dest.name, ctx.run_date)
        failed_now = results.where(F.col("status") != DELIVERED).join(
            classified.select(MESSAGE_ID, "__first_failed"), MESSAGE_ID, "left")
        failure_rows = failed_now.select(
            *keep, F.lit(ledger.FAILED).alias("status"), "error_class", "http_status", "response",
            F.coalesce(F.col("__first_failed"), d).alias("first_failed_run_date"), "attempts",
            F.lit(ctx.run_id).alias("run_id")).unionByName(
            classified.where(F.col("__given_up") | (F.col("__done") == ledger.GIVEN_UP)).select(
                *keep, F.lit(ledger.GIVEN_UP).alias("status"), F.lit(ledger.GIVEN_UP).alias("error_class"),
                F.lit(None).cast("int").alias("http_status"), F.lit(None).cast("string").alias("response"),
                F.coalesce(F.col("__first_failed"), d).alias("first_failed_run_date"),
                F.lit(0).alias("attempts"), F.lit(ctx.run_id).alias("run_id")))
        ledger.record_failures(spark, lake, dest.name, ctx.run_date, failure_rows)
        metrics, failed_by, unreachable = _metrics(spark, ctx, classified, results)
    finally:
        results.unpersist()
    excluded = {r: metrics.pop(f"excluded.{r}") for r in STREAMING_EXCLUSION_REASONS}
    status = "failed" if unreachable else ("delivered_with_failures" if metrics["failed"] else DELIVERED)
    error = None
    if unreachable:
        error = (f"{unreachable} message(s) not acknowledged after {dest.retry.attempts} attempt(s) "
                 f"({', '.join(f'{k}: {v}' for k, v in sorted(failed_by.items()))})")
    file_ledger.record_destination_metrics(lake, (
        dest.name, ctx.run_date, ctx.run_id, dest.type_name, mode, base, metrics["received"], metrics["activated"],
        excluded, metrics["failed"], 0, metrics["activated"], metrics["bytes"], status, error, failed_by,
        metrics.pop("latency_p50_ms", None), metrics.pop("latency_p95_ms", None)), dest.name, ctx.run_date)
    log.info("destination %s (%s, %s): %d received, %d activated, %s excluded, %d failed %s; sent in %.1fs, "
             "recorded in %.1fs", dest.name, dest.type_name, mode, metrics["received"], metrics["activated"], excluded,
             metrics["failed"], failed_by, sent_in, time.monotonic() - started - sent_in)
    if unreachable:
        raise DestinationError(f"destination {dest.name}: {error}; the next attempt or run sends only what was not "
                               "acknowledged, with the same message ids")
    return {**metrics, **{f"excluded.{k}": v for k, v in excluded.items()},
            **{f"failed.{k}": v for k, v in failed_by.items()}}


def _metrics(spark: SparkSession, ctx: RunContext, classified: DataFrame, results: DataFrame
             ) -> tuple[dict[str, Any], dict[str, int], int]:
    """(counts, failed by error class, how many failed as unreachable) of the run date."""
    counts = classified.agg(
        F.count(F.lit(1)).alias("received"),
        *[F.sum(F.when(F.col(REASON) == r, 1).otherwise(0)).alias(f"excluded.{r}")
          for r in STREAMING_EXCLUSION_REASONS],
        F.sum(F.when(F.col("__done") == ledger.DELIVERED, 1).otherwise(0)).alias("done"),
        F.sum(F.when(F.col("__done") == ledger.DELIVERED, F.col("__done_bytes")).otherwise(0)).alias("done_bytes"),
        F.sum(F.when(F.col("__given_up") | (F.col("__done") == ledger.GIVEN_UP), 1).otherwise(0)).alias("given_up"),
    ).first()
    assert counts is not None
    sent = results.agg(F.sum(F.when(F.col("status") == DELIVERED, 1).otherwise(0)).alias("delivered"),
                       F.sum(F.when(F.col("status") == DELIVERED, F.col("bytes")).otherwise(0)).alias("bytes")).first()
    assert sent is not None
    by_class = {r["error_class"]: int(r["count"]) for r in
                results.where(F.col("status") != DELIVERED).groupBy("error_class").count().collect()}
    if counts["given_up"]:
        by_class[ledger.GIVEN_UP] = int(counts["given_up"])
    unreachable = sum(v for k, v in by_class.items() if k.startswith(UNREACHABLE_PREFIXES))
    activated = int(counts["done"] or 0) + int(sent["delivered"] or 0)
    metrics: dict[str, Any] = {
        "received": int(counts["received"]), "activated": activated, "failed": sum(by_class.values()),
        "bytes": int(counts["done_bytes"] or 0) + int(sent["bytes"] or 0),
        **{f"excluded.{r}": int(counts[f"excluded.{r}"] or 0) for r in STREAMING_EXCLUSION_REASONS}}
    end = evaluation_end(ctx.lake, ctx.run_date)
    if end is not None and activated:
        acked = results.where(F.col("status") == DELIVERED).select("acknowledged_at").unionByName(
            classified.where(F.col("__done") == ledger.DELIVERED).select(
                (F.unix_micros("__done_at") / 1e6).alias("acknowledged_at")))
        latency = acked.select(((F.col("acknowledged_at") - F.lit(end)) * 1000).alias("ms"))
        row = latency.agg(F.percentile("ms", 0.5).alias("p50"), F.percentile("ms", 0.95).alias("p95")).first()
        assert row is not None
        metrics["latency_p50_ms"] = round(row["p50"])
        metrics["latency_p95_ms"] = round(row["p95"])
    return metrics, by_class, unreachable
