"""Streaming delivery throughput: N profile changes (default 1,000,000) to each endpoint on loopback.

    python -m bench.streaming [--changes 1000000] [--endpoints http,kafka] [--work DIR]

For each endpoint: a fresh lake with N members of one audience (profiles and memberships generated with
``spark.range``), one streaming export through the real code path (changes, executors' senders, delivery
ledger, metrics), after an unmeasured warm-up export of N/10 (at least 10,000) on a lake of its own,
against the tests' servers on 127.0.0.1 (the HTTP receiver in count-only mode, one Kafka broker, moto's
Kinesis). Reported: messages per second over the export's wall time, the p50 / p95 latency
from the end of audience evaluation to acknowledgement (destination_metrics) and the peak memory of the
process tree. Targets on the 2-core machine: 10,000 messages/s to HTTP (batched), 50,000 to Kafka.
Also the ``streaming`` suite of ``make bench`` (``python -m bench --suites streaming``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.measure import measure
from cdp.delta_io import read_table
from cdp.job import COMMITTED, StepKey, mark_step
from cdp.lake import AUDIENCE_MEMBERSHIP, DESTINATION_METRICS, PROFILES
from cdp.run_context import RunContext
from cdp.settings import REPO_ROOT, Settings
from cdp.spark import get_session
from cdp.workspace.loader import load_workspace

log = logging.getLogger("bench.streaming")
RUN_DATE = dt.date(2026, 11, 27)
MAPPING = ('mapping:\n  - {source: "identity:crm_id", name: crm_id}\n  - {source: "identity:email", hash: sha256}\n'
           "  - {source: first_name}\n  - {source: points}\n")
DESTINATIONS = {
    "http": "name: bench_http\ntype: http\nconnection: bench_http\npath: /ingest\naudiences: [gold_members]\n"
            "batching: {mode: configured, max_messages: 500}\n" + MAPPING,
    "kafka": "name: bench_kafka\ntype: kafka\nconnection: bench_kafka\ntopic: bench\naudiences: [gold_members]\n"
             "batching: {mode: configured, max_messages: 5000}\ncompression: lz4\n" + MAPPING,
    "kinesis": "name: bench_kinesis\ntype: kinesis\nconnection: bench_kinesis\nstream: bench\n"
               "audiences: [gold_members]\nbatching: {mode: configured, max_messages: 500}\n" + MAPPING,
}


def make_lake(spark: SparkSession, lake: str, changes: int) -> None:
    """``changes`` profiles of the run date, all members of gold_members (realized)."""
    ids = spark.range(changes)
    pid = F.format_string("p%09d", "id")
    ids.select(F.lit(RUN_DATE).alias("run_date"), pid.alias("profile_id"),
               F.create_map(F.lit("crm_id"), F.array(F.format_string("C%09d", "id")), F.lit("email"),
                            F.array(F.format_string("user%d@example.com", "id"))).alias("identities"),
               F.format_string("Name%d", F.col("id") % 1000).alias("first_name"), F.lit("gold").alias("tier"),
               (F.col("id") % 5000).alias("points")).write.format("delta").partitionBy("run_date").save(
        f"{lake}/{PROFILES.path}")
    qualified = dt.datetime.combine(RUN_DATE + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    ids.select(F.lit(RUN_DATE).alias("run_date"), F.lit("gold_members").alias("audience_id"), pid.alias("profile_id"),
               F.lit("realized").alias("status"), F.lit(qualified).alias("last_qualification_time"),
               F.lit(RUN_DATE).alias("status_since")).write.format("delta").partitionBy("run_date").save(
        f"{lake}/{AUDIENCE_MEMBERSHIP.path}")


def run_endpoint(spark: SparkSession, work: Path, endpoint: str, changes: int, connection: dict[str, Any]
                 ) -> dict[str, Any]:
    """One export of ``changes`` messages to ``endpoint``; its throughput, latencies and peak memory.

    A smaller export of the same shape runs first, unmeasured, on a lake of its own: the first Spark jobs of a
    JVM run cold (class loading, code generation, JIT), which the long-lived Spark Connect server the tasks use
    has long paid for (as in the export benchmark)."""
    warm = max(10_000, changes // 10)
    with measure() as cold:
        warmed = _export_once(spark, work, endpoint, warm, connection)
    log.info("streaming: %s warm-up of %d messages in %.1f s (cold JVM)", endpoint, warm, cold.seconds)
    result = _export_once(spark, work, endpoint, changes, connection)
    result["warm_up_messages"] = warmed["activated"]
    return result


def _export_once(spark: SparkSession, work: Path, endpoint: str, changes: int, connection: dict[str, Any]
                 ) -> dict[str, Any]:
    from jobs import export

    root = work / f"streaming-{endpoint}-{changes}"
    ws_root = root / "ws"
    if not ws_root.exists():
        import shutil

        shutil.copytree(REPO_ROOT / "examples" / "retail", ws_root)
        for f in (ws_root / "destinations").iterdir():
            f.unlink()
        (ws_root / "destinations" / f"bench_{endpoint}.yaml").write_text(DESTINATIONS[endpoint])
    lake = str(root / f"lake-{os.getpid()}")
    settings = Settings(workspace=str(ws_root), lake=lake, landing=str(root / "landing"), exports=str(root / "exports"))
    make_lake(spark, lake, changes)
    ws = load_workspace(ws_root, settings)
    ctx = RunContext(RUN_DATE, "bench", settings)
    os.environ[f"AIRFLOW_CONN_BENCH_{endpoint.upper()}"] = json.dumps(connection)
    mark_step(ctx.lake, RUN_DATE, StepKey("evaluate_audiences"), COMMITTED, "bench")
    with measure() as m:
        counts = export.run(spark, ws, ctx, f"bench_{endpoint}")
    row = read_table(spark, ctx.lake.path(DESTINATION_METRICS)).first()
    assert row is not None
    return {"endpoint": endpoint, "changes": changes, "activated": counts["activated"], "failed": counts["failed"],
            "seconds": round(m.seconds, 1), "messages_per_s": round(counts["activated"] / m.seconds),
            "latency_p50_ms": row["latency_p50_ms"], "latency_p95_ms": row["latency_p95_ms"],
            "peak_rss_mib": round(m.peak_rss_mib)}


def bench_streaming(spark: SparkSession, work: Path, changes: int, endpoints: list[str]) -> list[dict[str, Any]]:
    """One export of ``changes`` messages to each endpoint (http, kafka, kinesis) started on loopback."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from servers.processes import S3_KEY_ID, S3_SECRET, MotoServer
    from servers.streaming import HttpReceiver, KafkaBroker

    results = []
    for endpoint in endpoints:
        if endpoint == "http":
            with HttpReceiver() as receiver:
                receiver.control("record", False)
                result = run_endpoint(spark, work, endpoint, changes, receiver.connection())
                result["received_by_endpoint"] = receiver.accepted() - result["warm_up_messages"]
        elif endpoint == "kafka":
            with KafkaBroker() as broker:
                broker.create_topic("bench", partitions=2)
                result = run_endpoint(spark, work, endpoint, changes, broker.connection())
                result["received_by_endpoint"] = broker.count("bench") - result["warm_up_messages"]
        elif endpoint == "kinesis":
            with MotoServer() as moto:
                import boto3

                client = boto3.client("kinesis", endpoint_url=moto.url, region_name="us-east-1",
                                      aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
                client.create_stream(StreamName="bench", ShardCount=2)
                client.get_waiter("stream_exists").wait(StreamName="bench", WaiterConfig={"Delay": 0.2})
                connection = {"conn_type": "aws", "login": S3_KEY_ID, "password": S3_SECRET,
                              "extra": {"endpoint_url": moto.url, "region_name": "us-east-1"}}
                result = run_endpoint(spark, work, endpoint, changes, connection)
        else:
            raise ValueError(f"unknown endpoint {endpoint!r}: choose from http, kafka, kinesis")
        log.info("%s", result)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--endpoints", default="http,kafka")
    parser.add_argument("--work", default=tempfile.gettempdir())
    args = parser.parse_args(argv)
    results = bench_streaming(get_session("cdp-bench-streaming"), Path(args.work), args.changes,
                              [e.strip() for e in args.endpoints.split(",") if e.strip()])
    sys.stdout.write(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
