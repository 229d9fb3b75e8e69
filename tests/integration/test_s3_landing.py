"""Landing from S3: files listed on a real S3-compatible server (moto, on loopback) and read in place.

Spark reads every landed object where it is, through Hadoop's S3A connector (``s3a://``); the driver streams each
object once to hash it. Nothing is copied to the driver's disk, so the same task runs on a cluster whose
executors share no disk with it. The session-wide ``spark`` fixture loads the connector for this module (marker
``s3a``) and points it at the session's moto server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from servers.processes import S3_KEY_ID, S3_SECRET, MotoServer

from cdp.errors import LandingError, S3ConnectorMissingError
from cdp.ingestion.landing import check_spark_reads_s3, landed_hashes, list_landed_files
from cdp.lake import BATCH_LEDGER, DATASET, QUARANTINE, STAGING, Lake
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.spark import get_session
from cdp.spark_connect import ServerState, free_port, start_server, stop_server
from cdp.workspace.loader import Workspace, load_workspace
from jobs import ingest, validate

pytestmark = pytest.mark.s3a

DAY = dt.date(2024, 1, 5)
E1 = "1" * 38
CRM_HEADER = b"crm_id,email,phone,first_name,last_name,birth_date,country,city,consent_marketing,updated_at\n"
PREFIXES = {"crm_profiles": "exports/crm/{date}", "web_events": "exports/web/{date}",
            "loyalty_members": "exports/loyalty/{date}"}


@pytest.fixture()
def s3_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The AWS_* environment pointing boto3 at the session's moto server, as a deployment would set it."""
    for name, value in (("AWS_ACCESS_KEY_ID", S3_KEY_ID), ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", moto_server.url)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("CDP_S3_ENDPOINT", raising=False)
    return moto_server.url


@pytest.fixture()
def bucket(s3_env: str) -> str:
    """A new bucket for one test (moto's buckets last as long as the session's server)."""
    name = f"landing-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def s3_workspace(repo_root: Path, bucket: str) -> Workspace:
    """The example workspace with crm_profiles, web_events and loyalty_members landing in ``bucket``, rejection
    threshold off."""
    ws = load_workspace(repo_root / "examples" / "retail")
    datasets = dict(ws.datasets)
    for name, prefix in PREFIXES.items():
        source = datasets[name].source.model_copy(update={"type": "s3", "bucket": bucket, "path": prefix})
        datasets[name] = datasets[name].model_copy(update={"source": source})
    guardrails = ws.config.guardrails.model_copy(update={"max_rejected_share": 1.0})
    return dataclasses.replace(ws, datasets=datasets,
                               config=ws.config.model_copy(update={"guardrails": guardrails}))


def run_context(lake: str, tmp_path: Path, run_id: str = "s3-run") -> RunContext:
    settings = Settings(workspace="unused", lake=lake, landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))
    return RunContext(run_date=DAY, run_id=run_id, settings=settings)


def test_validate_and_ingest_from_s3(spark: SparkSession, bucket: str, repo_root: Path, lake: str,
                                     tmp_path: Path) -> None:
    client = boto3.client("s3")
    day = DAY.isoformat()
    client.put_object(Bucket=bucket, Key=f"exports/crm/{day}/crm.csv", Body=(
        CRM_HEADER
        + b"C1,ann@example.com,,Ann,Lee,,FR,Paris,true,2024-01-05T08:00:00Z\n"
        + b"C2,bob@example,,Bob,Ray,,US,Boston,false,2024-01-05T09:00:00Z\n"))
    hits = [{"event_id": "w1", "event_type": "page_view", "timestamp": "2024-01-05T10:00:00Z", "ecid": E1},
            {"event_id": "w2", "event_type": "page_view", "timestamp": "2024-01-05T10:01:00Z", "ecid": "E1"}]
    client.put_object(Bucket=bucket, Key=f"exports/web/{day}/hits.jsonl",
                      Body="\n".join(json.dumps(h) for h in hits).encode())
    # Not the day's files: a marker, an object "in a sub-folder", another day.
    client.put_object(Bucket=bucket, Key=f"exports/web/{day}/_SUCCESS", Body=b"")
    client.put_object(Bucket=bucket, Key=f"exports/web/{day}/old/hits.jsonl", Body=b"{}")
    client.put_object(Bucket=bucket, Key="exports/web/2024-01-04/hits.jsonl", Body=b"{}")

    ws = s3_workspace(repo_root, bucket)
    ctx = run_context(lake, tmp_path)
    crm_uri, web_uri = f"s3://{bucket}/exports/crm/{day}/crm.csv", f"s3://{bucket}/exports/web/{day}/hits.jsonl"
    assert list_landed_files(ctx.settings, ws.datasets["web_events"], DAY) == [web_uri]

    assert validate.run(spark, ws, ctx, "crm_profiles") == {
        "rows_read": 2, "rows_valid": 1, "rows_quarantined": 1, "files": 1}
    assert validate.run(spark, ws, ctx, "web_events") == {
        "rows_read": 2, "rows_valid": 1, "rows_quarantined": 1, "files": 1}
    assert ingest.run(spark, ws, ctx, "crm_profiles")["rows_inserted"] == 1
    assert ingest.run(spark, ws, ctx, "web_events")["rows_inserted"] == 1

    lk = Lake(lake)
    crm = spark.read.format("delta").load(lk.path(DATASET, "crm_profiles"))
    assert [tuple(r) for r in crm.select("crm_id", "city", "_source_file", "_row_number").collect()] == [
        ("C1", "Paris", crm_uri, 2)]
    web = spark.read.format("delta").load(lk.path(DATASET, "web_events"))
    assert [tuple(r) for r in web.select("event_id", "ecid", "_source_file", "_row_number").collect()] == [
        ("w1", E1, web_uri, 1)]
    q = spark.read.format("delta").load(lk.path(QUARANTINE))
    assert sorted((r["source_file"], r["row_number"], [tuple(x) for x in r["reasons"]]) for r in q.collect()) == [
        (crm_uri, 3, [("bad_format", "email",
                       "value 'bob@example' is not a valid email address (expected local@domain.tld)")]),
        (web_uri, 2, [("bad_identity_format", "ecid",
                       "identity value 'E1' does not match the pattern of namespace ecid (^[0-9]{38}$)")]),
    ]
    ledger = spark.read.format("delta").load(lk.path(BATCH_LEDGER))
    got = sorted(tuple(r) for r in ledger.select("dataset", "source_file", "rows_read", "rows_valid",
                                                 "rows_quarantined", "status").collect())
    assert got == [("crm_profiles", crm_uri, 2, 1, 1, "ingested"), ("web_events", web_uri, 2, 1, 1, "ingested")]
    # rows read = ingested + quarantined
    assert all(r[2] == r[3] + r[4] for r in got)
    assert ledger.where(F.col("run_id") != "s3-run").count() == 0


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def test_objects_are_read_in_place_never_copied_to_the_drivers_disk(
        spark: SparkSession, bucket: str, repo_root: Path, lake: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    day = DAY.isoformat()
    objects = {
        f"exports/crm/{day}/crm.csv": CRM_HEADER
        + b"C1,ann@example.com,,Ann,Lee,,FR,Paris,true,2024-01-05T08:00:00Z\n"
        + b"\n"  # a blank line keeps its number: the next record is line 4
        + b"C3,cy@example.com,,Cy,Ode,,DE,Berlin,true,2024-01-05T09:30:00Z\n",
        f"exports/web/{day}/a.jsonl": "\n".join(json.dumps(h) for h in [
            {"event_id": "w1", "event_type": "page_view", "timestamp": "2024-01-05T10:00:00Z", "ecid": E1},
            {"event_id": "w2", "event_type": "purchase", "timestamp": "2024-01-05T10:05:00Z", "ecid": E1}]).encode(),
        # Landed empty: read, no record, no hash (an empty file is never a duplicate).
        f"exports/web/{day}/b.jsonl": b"",
        f"exports/loyalty/{day}/members.parquet": parquet_bytes([
            {"loyalty_id": "L1", "email": "ann@example.com", "tier": "gold", "points": 120,
             "joined_on": "2023-02-01", "updated_at": "2024-01-05T07:00:00Z"},
            {"loyalty_id": "L2", "email": "bo@example.com", "tier": "silver", "points": 5,
             "joined_on": "2023-03-01", "updated_at": "2024-01-05T07:30:00Z"}]),
    }
    client = boto3.client("s3")
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    uri = {key.split("/")[-1]: f"s3://{bucket}/{key}" for key in objects}

    # The scratch folder the downloads used to go to, and Python's temporary folder: both must stay empty.
    scratch, temp = tmp_path / "scratch", tmp_path / "tmp"
    scratch.mkdir()
    temp.mkdir()
    monkeypatch.setenv("CDP_SCRATCH", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    # What Spark reads, looked at while the task runs (a copy removed at the end would go unseen afterwards).
    reads: list[tuple[list[str], list[str]]] = []

    def watched(real: Callable[..., tuple[DataFrame, list[Any]]]) -> Callable[..., tuple[DataFrame, list[Any]]]:
        def read(*args: Any) -> tuple[DataFrame, list[Any]]:
            parsed, unreadable = real(*args)
            local = sorted(str(p) for p in [*scratch.rglob("*"), *temp.rglob("*")])
            reads.append((sorted(parsed.inputFiles()), local))
            return parsed, unreadable
        return read

    monkeypatch.setattr(validate, "read_records", watched(validate.read_records))

    ws = s3_workspace(repo_root, bucket)
    ctx = run_context(lake, tmp_path)
    metrics = {name: validate.run(spark, ws, ctx, name) for name in PREFIXES}
    assert metrics == {
        "crm_profiles": {"rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 1},
        "web_events": {"rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 2},
        "loyalty_members": {"rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 1},
    }
    s3a = {name: "s3a://" + u[len("s3://"):] for name, u in uri.items()}
    assert reads == [([s3a["crm.csv"]], []), ([s3a["a.jsonl"], s3a["b.jsonl"]], []), ([s3a["members.parquet"]], [])]
    assert list(scratch.iterdir()) == [] and list(temp.iterdir()) == []

    lk = Lake(lake)
    staged = {name: sorted(tuple(r) for r in spark.read.format("delta").load(lk.path(STAGING, name))
                           .select(key, "_source_file", "_row_number").collect())
              for name, key in (("crm_profiles", "crm_id"), ("web_events", "event_id"),
                                ("loyalty_members", "loyalty_id"))}
    assert staged == {
        "crm_profiles": [("C1", uri["crm.csv"], 2), ("C3", uri["crm.csv"], 4)],
        "web_events": [("w1", uri["a.jsonl"], 1), ("w2", uri["a.jsonl"], 2)],
        "loyalty_members": [("L1", uri["members.parquet"], 1), ("L2", uri["members.parquet"], 2)],
    }
    # The ledger's hashes are those of the objects' bytes, streamed from the store; the empty object has none.
    ledger = spark.read.format("delta").load(lk.path(BATCH_LEDGER))
    assert sorted(tuple(r) for r in ledger.select("source_file", "rows_read", "sha256").collect()) == sorted(
        (f"s3://{bucket}/{key}", 0 if not body else 2, hashlib.sha256(body).hexdigest() if body else None)
        for key, body in objects.items())


def test_a_duplicate_object_is_found_by_its_streamed_hash(spark: SparkSession, bucket: str, repo_root: Path,
                                                         lake: str, tmp_path: Path) -> None:
    # The same bytes landed twice in one run (a re-sent export): the second is quarantined whole, not read again.
    body = "\n".join(json.dumps(h) for h in [
        {"event_id": "w1", "event_type": "page_view", "timestamp": "2024-01-05T10:00:00Z", "ecid": E1}]).encode()
    client = boto3.client("s3")
    day = DAY.isoformat()
    for name in ("a.jsonl", "copy.jsonl"):
        client.put_object(Bucket=bucket, Key=f"exports/web/{day}/{name}", Body=body)
    ws = s3_workspace(repo_root, bucket)
    assert validate.run(spark, ws, run_context(lake, tmp_path), "web_events") == {
        "rows_read": 2, "rows_valid": 1, "rows_quarantined": 1, "files": 2}
    digest = hashlib.sha256(body).hexdigest()
    ledger = spark.read.format("delta").load(Lake(lake).path(BATCH_LEDGER))
    assert sorted(tuple(r) for r in ledger.select("source_file", "status", "sha256").collect()) == [
        (f"s3://{bucket}/exports/web/{day}/a.jsonl", "staged", digest),
        (f"s3://{bucket}/exports/web/{day}/copy.jsonl", "duplicate", digest)]


def test_missing_bucket_is_a_landing_error(s3_env: str, repo_root: Path, tmp_path: Path) -> None:
    ws = s3_workspace(repo_root, "no-such-bucket")
    settings = Settings(workspace="unused", lake=str(tmp_path / "lake"), landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))
    with pytest.raises(LandingError) as caught:
        list_landed_files(settings, ws.datasets["web_events"], DAY)
    message = str(caught.value)
    assert message.startswith("dataset web_events: cannot list s3://no-such-bucket/exports/web/2024-01-05: ")
    assert "NoSuchBucket" in message
    assert message.endswith("(check the bucket name in the dataset's source and the AWS_* environment variables)")


def test_an_object_gone_after_the_listing_is_a_landing_error_naming_it(bucket: str, repo_root: Path) -> None:
    dataset = s3_workspace(repo_root, bucket).datasets["web_events"]
    gone = f"s3://{bucket}/exports/web/2024-01-05/removed.jsonl"
    with pytest.raises(LandingError) as caught:
        landed_hashes(dataset, [gone])
    message = str(caught.value)
    assert message.startswith(f"dataset web_events: cannot read {gone}: ")
    assert "NoSuchKey" in message
    assert message.endswith("(it was listed a moment ago: check that nothing removes the day's objects while "
                            "validate runs, and that the AWS_* environment variables allow s3:GetObject on the "
                            "bucket)")


def test_a_session_without_the_s3a_connector_is_refused_before_anything_is_read(
        spark: SparkSession, spark_connect_server: ServerState, bucket: str, repo_root: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = s3_workspace(repo_root, bucket).datasets["loyalty_members"]
    files = [f"s3://{bucket}/exports/loyalty/2024-01-05/members.parquet"]
    check_spark_reads_s3(spark, dataset, files)  # the test session has the connector (marker s3a)
    # The session's Connect server started for the example workspace, all of whose datasets land locally: no S3A,
    # as a server started before the workspace's first S3 source would be.
    monkeypatch.setenv("CDP_SPARK_REMOTE", spark_connect_server.url)
    # PySpark marks the process as a Connect client when a remote session starts: undone after the test, so that
    # the tests after it get classic columns again (see test_streaming_connect.py).
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    client = get_session("cdp-test-no-s3a")
    try:
        check_spark_reads_s3(client, dataset, ["/landing/loyalty/2024-01-05/members.parquet"])
        with pytest.raises(S3ConnectorMissingError) as caught:
            check_spark_reads_s3(client, dataset, files)
    finally:
        client.stop()
    assert not caught.value.retryable
    assert str(caught.value) == (
        f"dataset loyalty_members: {files[0]} landed on S3, but this Spark session was started without Hadoop's S3A "
        "connector, so Spark cannot read it in place. Sessions load it when CDP_WORKSPACE names a workspace with a "
        "dataset of source type s3 (or CDP_LAKE is s3a://) as they start: restart the Spark Connect server after "
        "changing the workspace (scripts/spark_connect.py stop, then start), check that CDP_WORKSPACE is the same "
        "for the server, the Airflow workers and the job, then clear the task")


def test_a_connect_server_started_for_a_workspace_landing_on_s3_reads_the_objects_in_place(
        bucket: str, repo_root: Path, lake: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # The default deployment: jobs are clients of one Connect server, which learns from the workspace at
    # CDP_WORKSPACE, as it starts, that a dataset lands on S3 (its store and credentials: the AWS_* environment).
    workspace = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    web = workspace / "datasets" / "web_events.yaml"
    web.write_text(web.read_text(encoding="utf-8").replace(
        'source: {type: local, path: "web/{date}"}',
        f'source: {{type: s3, bucket: {bucket}, path: "exports/web/{{date}}"}}'), encoding="utf-8")
    key = f"exports/web/{DAY.isoformat()}/hits.jsonl"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body="\n".join(json.dumps(h) for h in [
        {"event_id": "w1", "event_type": "page_view", "timestamp": "2024-01-05T10:00:00Z", "ecid": E1},
        {"event_id": "w2", "event_type": "purchase", "timestamp": "2024-01-05T10:01:00Z", "ecid": E1}]).encode())
    state = ServerState(tmp_path / "connect", free_port())
    with pytest.MonkeyPatch.context() as server_env, caplog.at_level(logging.INFO, logger="cdp.spark_connect"):
        server_env.setenv("CDP_WORKSPACE", str(workspace))
        server_env.setenv("CDP_LAKE", lake)
        start_server(state, master="local[1]", driver_memory="1g")
    try:
        assert ("the Spark Connect server loads the S3A connector for dataset web_events (lands in "
                f"s3://{bucket}/exports/web/{{date}})") in caplog.messages
        monkeypatch.setenv("CDP_SPARK_REMOTE", state.url)
        monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
        client = get_session("cdp-test-connect-s3-landing")
        try:
            ctx = run_context(lake, tmp_path)
            assert validate.run(client, load_workspace(workspace, ctx.settings), ctx, "web_events") == {
                "rows_read": 2, "rows_valid": 2, "rows_quarantined": 0, "files": 1}
            staged = client.read.format("delta").load(Lake(lake).path(STAGING, "web_events"))
            assert sorted(tuple(r) for r in staged.select("event_id", "_source_file", "_row_number").collect()) == [
                ("w1", f"s3://{bucket}/{key}", 1), ("w2", f"s3://{bucket}/{key}", 2)]
        finally:
            client.stop()
    finally:
        stop_server(state)
