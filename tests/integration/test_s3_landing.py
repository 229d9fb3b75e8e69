"""Landing from S3: files listed and read from a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.errors import LandingError
from cdp.ingestion.landing import list_landed_files
from cdp.lake import BATCH_LEDGER, DATASET, QUARANTINE, Lake
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import ingest, validate

DAY = dt.date(2024, 1, 5)
BUCKET = "landing-bucket"
E1 = "1" * 38


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint(repo_root: Path) -> Iterator[str]:
    """A moto S3 server on a free loopback port for this module's tests."""
    port = free_port()
    server = subprocess.Popen([str(repo_root / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # until it answers (a readiness wait, not a timed assertion)
            if server.poll() is not None:
                raise RuntimeError(f"moto_server exited with {server.returncode}")
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            raise RuntimeError(f"moto_server did not answer on {endpoint}")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The AWS_* environment pointing boto3 at the moto server, as a deployment would set it."""
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", s3_endpoint)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_endpoint


def s3_workspace(repo_root: Path) -> Workspace:
    """The example workspace with crm_profiles and web_events landing in a bucket, rejection threshold off."""
    ws = load_workspace(repo_root / "examples" / "retail")
    datasets = dict(ws.datasets)
    for name, prefix in (("crm_profiles", "exports/crm/{date}"), ("web_events", "exports/web/{date}")):
        source = datasets[name].source.model_copy(update={"type": "s3", "bucket": BUCKET, "path": prefix})
        datasets[name] = datasets[name].model_copy(update={"source": source})
    guardrails = ws.config.guardrails.model_copy(update={"max_rejected_share": 1.0})
    return dataclasses.replace(ws, datasets=datasets,
                               config=ws.config.model_copy(update={"guardrails": guardrails}))


def test_validate_and_ingest_from_s3(spark: SparkSession, s3_env: str, repo_root: Path, lake: str,
                                     tmp_path: Path) -> None:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    day = DAY.isoformat()
    client.put_object(Bucket=BUCKET, Key=f"exports/crm/{day}/crm.csv", Body=(
        b"crm_id,email,phone,first_name,last_name,birth_date,country,city,consent_marketing,updated_at\n"
        b"C1,ann@example.com,,Ann,Lee,,FR,Paris,true,2024-01-05T08:00:00Z\n"
        b"C2,bob@example,,Bob,Ray,,US,Boston,false,2024-01-05T09:00:00Z\n"))
    hits = [{"event_id": "w1", "event_type": "page_view", "timestamp": "2024-01-05T10:00:00Z", "ecid": E1},
            {"event_id": "w2", "event_type": "page_view", "timestamp": "2024-01-05T10:01:00Z", "ecid": "E1"}]
    client.put_object(Bucket=BUCKET, Key=f"exports/web/{day}/hits.jsonl",
                      Body="\n".join(json.dumps(h) for h in hits).encode())
    # Not the day's files: a marker, an object "in a sub-folder", another day.
    client.put_object(Bucket=BUCKET, Key=f"exports/web/{day}/_SUCCESS", Body=b"")
    client.put_object(Bucket=BUCKET, Key=f"exports/web/{day}/old/hits.jsonl", Body=b"{}")
    client.put_object(Bucket=BUCKET, Key="exports/web/2024-01-04/hits.jsonl", Body=b"{}")

    ws = s3_workspace(repo_root)
    settings = Settings(workspace="unused", lake=lake, landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))
    ctx = RunContext(run_date=DAY, run_id="s3-run", settings=settings)
    crm_uri, web_uri = f"s3://{BUCKET}/exports/crm/{day}/crm.csv", f"s3://{BUCKET}/exports/web/{day}/hits.jsonl"
    assert list_landed_files(settings, ws.datasets["web_events"], DAY) == [web_uri]

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
    assert got == [("crm_profiles", crm_uri, 2, 1, 1, "ok"), ("web_events", web_uri, 2, 1, 1, "ok")]
    # rows read = ingested + quarantined
    assert all(r[2] == r[3] + r[4] for r in got)
    assert ledger.where(F.col("run_id") != "s3-run").count() == 0


def test_missing_bucket_is_a_landing_error(s3_env: str, repo_root: Path, tmp_path: Path) -> None:
    ws = s3_workspace(repo_root)
    dataset = ws.datasets["web_events"]
    dataset = dataset.model_copy(update={"source": dataset.source.model_copy(update={"bucket": "no-such-bucket"})})
    settings = Settings(workspace="unused", lake=str(tmp_path / "lake"), landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))
    with pytest.raises(LandingError) as caught:
        list_landed_files(settings, dataset, DAY)
    message = str(caught.value)
    assert message.startswith("dataset web_events: cannot list s3://no-such-bucket/exports/web/2024-01-05: ")
    assert "NoSuchBucket" in message
    assert message.endswith("(check the bucket name in the dataset's source and the AWS_* environment variables)")
