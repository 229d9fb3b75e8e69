"""The export job killed (SIGKILL, process group and JVM) in the middle of an upload, then re-run: the
file arrives once, under its name, whole; nothing half-written is visible; the ledger ends delivered."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from export_lake import D, build_members_lake
from pyspark.sql import SparkSession
from servers.fault_proxy import FaultProxy
from servers.processes import MotoServer
from servers.targets import MB, Target

from cdp.job import COMMITTED, StepKey, mark_step
from cdp.lake import EXPORT_LEDGER
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.storage import env_var_name
from cdp.workspace.loader import load_workspace
from jobs import export

MEMBERS = 60_000  # about 2.5 MB of CSV: the proxy stalls the upload after 512 KB, surely in the middle
BUCKET = "cdp-kill"
DESTINATION = """name: kill_s3
type: s3
connection: kill_s3
bucket: cdp-kill
path: out
audiences: [gold_members]
mapping:
  - {source: "identity:crm_id", name: crm_id}
  - {source: first_name}
  - {source: tier}
"""


def wait_for_stall(proxy: FaultProxy, job: subprocess.Popen[bytes]) -> None:
    """Until the upload hangs at the proxy (a readiness wait for the kill, not a timed assertion)."""
    deadline = time.monotonic() + 900
    while not proxy.stalled.wait(0.2):
        if job.poll() is not None:
            err = job.stderr.read().decode()[-3000:] if job.stderr else ""
            raise AssertionError(f"the export job ended (exit {job.returncode}) before its upload stalled: {err}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the export job's upload to reach the proxy")


def test_export_job_killed_mid_upload_then_re_run(spark: SparkSession, repo_root: Path, tmp_path: Path, lake: str,
                                                  moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    shutil.rmtree(workspace / "destinations")
    (workspace / "destinations").mkdir()
    (workspace / "destinations" / "kill_s3.yaml").write_text(DESTINATION, encoding="utf-8")
    ws = load_workspace(workspace)
    settings = Settings(workspace=str(workspace), lake=lake, landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))
    ctx = RunContext(D, "re-run", settings)
    build_members_lake(spark, ws, ctx.lake, MEMBERS, "gold_members", D)
    mark_step(ctx.lake, D, StepKey("evaluate_audiences"), COMMITTED, "test")
    Target("s3", moto_server, bucket=BUCKET).prepare()
    client = moto_server.client()

    with FaultProxy(moto_server.port, stall_after_bytes=MB // 2) as proxy:
        env = {**os.environ, env_var_name("kill_s3"): json.dumps(moto_server.connection_via(proxy.port)),
               "CDP_WORKSPACE": str(workspace), "CDP_LAKE": lake, "CDP_LANDING": settings.landing,
               "CDP_EXPORTS": settings.exports, "CDP_DRIVER_MEMORY": "1g", "CDP_SHUFFLE_PARTITIONS": "2",
               "CDP_SPARK_MASTER": "local[2]"}
        job = subprocess.Popen([sys.executable, "-m", "jobs.export", "--run-date", D.isoformat(), "--run-id",
                                "killed", "--destination", "kill_s3"], env=env, cwd=repo_root,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_stall(proxy, job)
        finally:
            os.killpg(job.pid, signal.SIGKILL)  # the job and its JVM
            job.wait()
    assert job.returncode == -signal.SIGKILL
    # Killed mid-PUT: the target holds nothing; the ledger says planned, not delivered.
    assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    ledger = spark.read.format("delta").load(ctx.lake.path(EXPORT_LEDGER)).collect()
    assert [(r["file_name"], r["status"], r["run_id"]) for r in ledger] == [
        ("kill_s3_gold_members_20261127.csv", "planned", "killed")]

    monkeypatch.setenv(env_var_name("kill_s3"), json.dumps(moto_server.connection()))
    metrics = export.run(spark, ws, ctx, "kill_s3")
    listed = client.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [o["Key"] for o in listed] == ["out/kill_s3_gold_members_20261127.csv"]
    assert "Uploads" not in client.list_multipart_uploads(Bucket=BUCKET)
    body = client.get_object(Bucket=BUCKET, Key="out/kill_s3_gold_members_20261127.csv")["Body"].read()
    lines = body.decode().splitlines()
    assert lines[0] == "crm_id,first_name,tier,membership_status,last_qualification_time"
    assert len(lines) == MEMBERS + 1
    assert lines[1] == "C000000000,Ann,gold,realized,2026-11-27T12:00:00Z"
    assert len(set(lines)) == len(lines)  # every member once
    ledger = spark.read.format("delta").load(ctx.lake.path(EXPORT_LEDGER)).collect()
    assert [(r["file_name"], r["status"], r["rows"], r["sha256"]) for r in ledger] == [
        ("kill_s3_gold_members_20261127.csv", "delivered", MEMBERS, hashlib.sha256(body).hexdigest())]
    assert (metrics["received"], metrics["activated"], metrics["failed"], metrics["files"]) == (MEMBERS, MEMBERS, 0, 1)
