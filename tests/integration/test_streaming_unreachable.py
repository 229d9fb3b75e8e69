"""An HTTP endpoint that stays unreachable fails the destination's task (so Airflow retries it) after recording
what failed; the next attempt, with the endpoint back, delivers everything under the same message ids."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.processes import free_port
from servers.streaming import HttpReceiver
from streaming_lake import context, valid, workspace_with, write_day

from cdp.delta_io import read_table
from cdp.errors import DestinationError
from cdp.lake import DELIVERY_FAILURES, DELIVERY_LEDGER, DESTINATION_METRICS
from jobs import export

D1 = dt.date(2026, 11, 25)
DEST = """name: crm_api
type: http
connection: crm_api
audiences: [gold_members]
retry: {attempts: 2, initial_wait_seconds: 0.01, max_wait_seconds: 0.05}
mapping:
  - {source: "identity:crm_id", name: crm_id}
"""
PEOPLE = {"p1": ("C1", None, "Ann", 1), "p2": ("C2", None, "Bob", 2)}


def test_unreachable_endpoint_fails_the_task_then_the_retry_delivers(
        spark: SparkSession, tmp_path: Path, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    http_receiver.control("reset")
    _, ws, settings = workspace_with(tmp_path, {"crm_api": DEST})
    ctx = context(settings, D1)
    write_day(spark, ctx.lake, D1, PEOPLE, {p: ("realized", D1) for p in PEOPLE})
    monkeypatch.setenv("CDP_STREAM_PARTITIONS", "1")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_API", json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{free_port()}"}))
    with pytest.raises(DestinationError) as caught:
        export.run(spark, ws, ctx, "crm_api")
    assert str(caught.value) == (
        "destination crm_api: 2 message(s) not acknowledged after 2 attempt(s) (connection_error: 2); the next "
        "attempt or run sends only what was not acknowledged, with the same message ids")
    assert caught.value.retryable
    row = read_table(spark, ctx.lake.path(DESTINATION_METRICS)).first()
    assert row is not None
    assert (row["received"], row["activated"], row["failed"], row["failed_by"], row["status"]) == (
        2, 0, 2, {"connection_error": 2}, "failed")
    failures = read_table(spark, ctx.lake.path(DELIVERY_FAILURES)).collect()
    assert sorted((r["profile_id"], r["error_class"], r["attempts"]) for r in failures) == [
        ("p1", "connection_error", 2), ("p2", "connection_error", 2)]
    failed_ids = {r["profile_id"]: r["message_id"] for r in failures}

    monkeypatch.setenv("AIRFLOW_CONN_CRM_API", json.dumps(http_receiver.connection()))
    counts = export.run(spark, ws, ctx, "crm_api")
    assert (counts["received"], counts["activated"], counts["failed"]) == (2, 2, 0)
    assert {valid(m)["profileId"]: m["messageId"] for m in http_receiver.messages()} == failed_ids
    delivered = read_table(spark, ctx.lake.path(DELIVERY_LEDGER)).where(F.col("status") == "delivered").count()
    assert delivered == 2
    assert read_table(spark, ctx.lake.path(DELIVERY_FAILURES)).count() == 0  # the run date's failures replaced
