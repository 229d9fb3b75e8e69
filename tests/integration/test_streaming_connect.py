"""The http streaming destination run by a Spark Connect client (how the jobs run under Airflow by default).

The executors of the Connect server send the messages (``mapInArrow``: a Connect client has no RDDs); the
client folds the results into the ledger with SQL MERGE. Two sending partitions, so the rate limit and the
journal are shared by two tasks; a re-run of the day sends nothing again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.streaming import HttpReceiver
from streaming_lake import context, workspace_with, write_day

from cdp.delta_io import read_table
from cdp.lake import DELIVERY_LEDGER, DESTINATION_METRICS
from cdp.spark import default_parallelism, get_session, is_remote
from cdp.spark_connect import ServerState
from jobs import export

D1 = dt.date(2026, 11, 25)
DEST = """name: crm_api
type: http
connection: crm_api
path: /v1/profiles
audiences: [gold_members]
batching: {mode: configured, max_messages: 2, max_seconds: 5}
retry: {attempts: 3, initial_wait_seconds: 0.05, max_wait_seconds: 1}
mapping:
  - {source: "identity:crm_id", name: crm_id}
  - {source: first_name, name: firstName}
"""
PEOPLE = {f"p{i}": (f"C{i}", None, f"Name{i}", i) for i in range(1, 8)}


@pytest.fixture()
def connect_spark(spark_connect_server: ServerState, monkeypatch: pytest.MonkeyPatch) -> Iterator[SparkSession]:
    monkeypatch.setenv("CDP_SPARK_REMOTE", spark_connect_server.url)
    # PySpark marks the whole process as a Connect client when it creates a remote session (this variable makes
    # pyspark.sql.functions build Connect columns): set here, so that monkeypatch removes it after the test and
    # the tests after this one get columns of the session-wide classic SparkSession again.
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    session = get_session("cdp-test-streaming-connect")
    try:
        yield session
    finally:
        session.stop()


def test_http_day_sent_by_the_executors_of_a_connect_server(
        connect_spark: SparkSession, tmp_path: Path, http_receiver: HttpReceiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    spark = connect_spark
    assert is_remote(spark)
    http_receiver.control("reset")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_API", json.dumps(http_receiver.connection()))
    monkeypatch.setenv("CDP_STREAM_PARTITIONS", "2")
    # One 500 answer: the batch that meets it is retried and acknowledged once.
    http_receiver.control("faults", [{"status": 500}])
    _, ws, settings = workspace_with(tmp_path, {"crm_api": DEST})
    ctx = context(settings, D1)
    write_day(spark, ctx.lake, D1, PEOPLE, {p: ("realized", D1) for p in PEOPLE})

    result = export.run(spark, ws, ctx, "crm_api")

    assert (result["received"], result["activated"], result["failed"]) == (7, 7, 0)
    received = {m["profileId"]: m for m in http_receiver.messages()}
    assert sorted(received) == sorted(PEOPLE)
    assert {p: (m["attributes"], m["identityMap"]) for p, m in received.items()} == {
        p: ({"firstName": name}, {"crm_id": [{"id": crm}]}) for p, (crm, _, name, _) in PEOPLE.items()}
    assert len(http_receiver.requests()) == 4  # 2 partitions: batches of 2, 2 | 2, 1 (7 profiles)
    ledger = {r["profile_id"]: (r["status"], r["message_id"]) for r in read_table(
        spark, ctx.lake.path(DELIVERY_LEDGER)).collect()}
    assert {p: s for p, (s, _) in ledger.items()} == {p: "delivered" for p in PEOPLE}
    assert {p: m["messageId"] for p, m in received.items()} == {p: mid for p, (_, mid) in ledger.items()}
    row = read_table(spark, ctx.lake.path(DESTINATION_METRICS)).where(F.col("run_date") == F.lit(D1)).first()
    assert row is not None and (row["status"], row["activated"], row["failed"]) == ("delivered", 7, 0)

    # A re-run of the day, through the same server: nothing is sent again.
    http_receiver.control("reset")
    again = export.run(spark, ws, context(settings, D1), "crm_api")
    assert http_receiver.messages() == []
    assert (again["received"], again["activated"], again["failed"]) == (7, 7, 0)


def test_default_parallelism_of_a_connect_server(connect_spark: SparkSession) -> None:
    # The fixture's server runs local[2].
    assert default_parallelism(connect_spark) == 2
