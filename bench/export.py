"""Export throughput: N members of one audience to an S3-compatible server (moto's, on loopback), as
CSV.gz and as Parquet, side by side with the plainest way to do it: a Spark write of the same rows as
one file plus one boto3 upload of it. Both run once unmeasured first (warm JVM and caches, as on the
long-lived Spark Connect server the tasks use), then once measured.

Ours is the whole export job (``jobs.export.run``): selecting the members and their profiles, the
mapping (a hashed e-mail), the exclusions and their counts, one sorted, deterministic file, its
SHA-256, the ledger, the upload (multipart, atomic), the metrics. The peer reads the same members
and profiles, maps the same columns and hashes the same e-mail, writes one file with Spark
(``coalesce(1)``) and uploads it with boto3's ``upload_file``; it checks nothing and records nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.measure import measure
from cdp.lake import AUDIENCE_MEMBERSHIP, PROFILES, Lake
from cdp.run_context import RunContext
from cdp.settings import REPO_ROOT, Settings
from cdp.storage import env_var_name
from cdp.workspace.loader import load_workspace
from cdp.workspace.models import DestinationSpec

log = logging.getLogger("bench.export")
RUN_DATE = dt.date(2026, 11, 27)
BUCKET = "cdp-bench"
AUDIENCE = "gold_members"


def destination(file_format: str, suffix: str = "") -> Any:
    config = {"name": f"bench_{file_format}{suffix}", "type": "s3", "connection": "bench_s3", "bucket": BUCKET,
              "path": f"ours/{file_format}", "audiences": [AUDIENCE], "format": file_format,
              "compression": "gzip" if file_format == "csv" else "snappy",
              "mapping": [{"source": "identity:crm_id", "name": "crm_id"},
                          {"source": "identity:email", "hash": "sha256"},
                          {"source": "first_name"}, {"source": "tier"}, {"source": "country"},
                          {"source": "points"}]}
    dest = TypeAdapter(DestinationSpec).validate_python(config)
    for mapped in dest.mapping:
        if mapped.namespace is not None:
            mapped.bind_namespace_type({"email": "email"}.get(mapped.namespace, "person"))
    return dest


def peer_rows(spark: SparkSession, lake: Lake) -> DataFrame:
    """The same rows, the plain way: members joined to profiles, the same columns, the same hash."""
    members = spark.read.format("delta").load(lake.path(AUDIENCE_MEMBERSHIP)).where(
        (F.col("run_date") == F.lit(RUN_DATE)) & (F.col("audience_id") == AUDIENCE))
    profiles = spark.read.format("delta").load(lake.path(PROFILES)).where(F.col("run_date") == F.lit(RUN_DATE))
    joined = members.join(profiles.drop("run_date"), "profile_id")
    return joined.select(
        F.array_join(F.col("identities")["crm_id"], "|").alias("crm_id"),
        F.array_join(F.transform(F.col("identities")["email"], lambda e: F.sha2(F.lower(F.trim(e)), 256)),
                     "|").alias("email_lc_sha256"),
        "first_name", "tier", "country", "points", F.col("status").alias("membership_status"),
        F.col("last_qualification_time"))


def peer(spark: SparkSession, lake: Lake, client: Any, work: Path, file_format: str, suffix: str = "") -> int:
    """Plain Spark write of one file, then one boto3 upload; the uploaded bytes."""
    out = work / f"peer-{file_format}"
    shutil.rmtree(out, ignore_errors=True)
    writer = peer_rows(spark, lake).coalesce(1).write.mode("overwrite")
    if file_format == "csv":
        writer.option("header", "true").option("compression", "gzip").csv(str(out))
    else:
        writer.option("compression", "snappy").parquet(str(out))
    (part,) = glob.glob(str(out / "part-*"))
    client.upload_file(part, BUCKET, f"peer{suffix}/{file_format}/{os.path.basename(part)}")
    size = os.path.getsize(part)
    shutil.rmtree(out, ignore_errors=True)
    return size


def bench_export(spark: SparkSession, work: Path, members: int) -> list[dict[str, Any]]:
    """One row per format: ours and the peer's wall time, their ratio, rows/s, bytes and peak memory."""
    sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "integration")]
    from export_lake import build_members_lake
    from servers.processes import MotoServer

    from jobs import export

    ws = load_workspace(REPO_ROOT / "examples" / "retail")
    root = work / f"export-{members}"
    shutil.rmtree(root, ignore_errors=True)
    settings = Settings(workspace=str(ws.root), lake=str(root / "lake"), landing=str(root / "landing"),
                        exports=str(root / "exports"))
    ctx = RunContext(RUN_DATE, "bench", settings)
    with measure() as built:
        build_members_lake(spark, ws, ctx.lake, members, AUDIENCE, RUN_DATE)
    log.info("export: lake of %d members built in %.1f s", members, built.seconds)
    rows: list[dict[str, Any]] = []
    with MotoServer() as server:
        os.environ[env_var_name("bench_s3")] = json.dumps(server.connection())
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        for file_format in ("csv", "parquet"):
            # Both paths once before they are measured, to another destination and key: the first Spark jobs of
            # a JVM run cold (JIT, the Delta log cache, the page cache), which the long-lived Connect server
            # the tasks run on has long paid for; measured cold, whichever ran first would lose.
            warm = destination(file_format, "_warmup")
            with measure() as cold_ours:
                export.run(spark, dataclasses.replace(ws, destinations={warm.name: warm}), ctx, warm.name)
            with measure() as cold_peer:
                peer(spark, ctx.lake, client, root, file_format, "_warmup")
            log.info("export: %s cold (warm-up): ours %.1f s, plain %.1f s", file_format, cold_ours.seconds,
                     cold_peer.seconds)
            dest = destination(file_format)
            bench_ws = dataclasses.replace(ws, destinations={dest.name: dest})
            with measure() as ours:
                metrics = export.run(spark, bench_ws, ctx, dest.name)
            with measure() as theirs:
                peer_bytes = peer(spark, ctx.lake, client, root, file_format)
            assert metrics["activated"] == members, metrics
            rows.append({"format": f"{file_format}{'.gz' if file_format == 'csv' else ''}", "rows": members,
                         "ours_s": round(ours.seconds, 1), "plain_write_upload_s": round(theirs.seconds, 1),
                         "ours_over_plain": round(ours.seconds / theirs.seconds, 2),
                         "ours_rows_per_s": round(members / ours.seconds), "ours_bytes": metrics["bytes"],
                         "plain_bytes": peer_bytes, "peak_rss_mib": round(max(ours.peak_rss_mib,
                                                                                theirs.peak_rss_mib))})
            log.info("export: %s", rows[-1])
    shutil.rmtree(root, ignore_errors=True)
    return rows
