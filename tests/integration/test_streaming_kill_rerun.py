"""A streaming export killed mid-run (SIGKILL of its whole process group, the JVM and Python workers included)
and run again: nothing is lost, what was acknowledged before the kill is not sent again (the executors'
journal is folded into the delivery ledger), and a message is sent twice at most when its batch was in
flight at the kill, always with the same message id."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.processes import stop_process_group
from servers.streaming import HttpReceiver
from streaming_lake import REPO, context, valid, workspace_with, write_day

from cdp.delta_io import read_table
from cdp.lake import DELIVERY_LEDGER, DESTINATION_METRICS
from jobs import export

D1 = dt.date(2026, 11, 25)
# One message per request, one per second: the kill lands while most are still to send.
DEST = """name: crm_api
type: http
connection: crm_api
audiences: [gold_members]
batching: {mode: configured, max_messages: 1}
rate_limit: 1
mapping:
  - {source: "identity:crm_id", name: crm_id}
"""
PEOPLE = {f"p{i}": (f"C{i}", None, f"N{i}", i) for i in range(1, 9)}


def test_killed_export_resends_at_most_the_batch_in_flight(spark: SparkSession, tmp_path: Path,
                                                           http_receiver: HttpReceiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    http_receiver.control("reset")
    _, ws, settings = workspace_with(tmp_path, {"crm_api": DEST})
    ctx = context(settings, D1)
    write_day(spark, ctx.lake, D1, PEOPLE, {p: ("realized", D1) for p in PEOPLE})
    connection = json.dumps(http_receiver.connection())
    env = {**os.environ, "AIRFLOW_CONN_CRM_API": connection, "CDP_STREAM_PARTITIONS": "1"}
    job = subprocess.Popen([sys.executable, "-m", "jobs.export", "--run-date", D1.isoformat(), "--run-id", "first",
                            "--destination", "crm_api", *settings.as_args()], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(http_receiver.messages()) < 3:
            assert job.poll() is None, f"the export ended (code {job.returncode}) before it could be killed"
            assert time.monotonic() < deadline, "the export sent nothing within 600 s"
            time.sleep(0.05)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    finally:
        stop_process_group(job.pid)
    before_kill = [m["messageId"] for m in http_receiver.messages()]
    assert 3 <= len(before_kill) < len(PEOPLE)

    monkeypatch.setenv("AIRFLOW_CONN_CRM_API", connection)
    monkeypatch.setenv("CDP_STREAM_PARTITIONS", "1")
    counts = export.run(spark, ws, context(settings, D1, "second"), "crm_api")

    received = http_receiver.messages()
    by_profile: dict[str, set[str]] = {}
    for m in received:
        by_profile.setdefault(valid(m)["profileId"], set()).add(m["messageId"])
    assert sorted(by_profile) == sorted(PEOPLE)  # nothing lost
    assert all(len(ids) == 1 for ids in by_profile.values())  # a re-send carries the same message id
    resent = [i for i, n in Counter(m["messageId"] for m in received).items() if n > 1]
    assert len(resent) <= 1 and set(resent) <= set(before_kill)  # at most the batch in flight at the kill
    ledger = read_table(spark, ctx.lake.path(DELIVERY_LEDGER)).where(F.col("status") == "delivered")
    assert {r["profile_id"]: r["message_id"] for r in ledger.collect()} == {
        p: next(iter(ids)) for p, ids in by_profile.items()}
    assert (counts["received"], counts["activated"], counts["failed"]) == (8, 8, 0)
    row = read_table(spark, ctx.lake.path(DESTINATION_METRICS)).first()
    assert row is not None and (row["received"], row["activated"], row["status"], row["run_id"]) == (
        8, 8, "delivered", "second")
    assert row["latency_p50_ms"] is not None and 0 <= row["latency_p50_ms"] <= row["latency_p95_ms"]
    assert not (Path(settings.lake) / "_stream_journal" / "crm_api" / D1.isoformat()).exists()
