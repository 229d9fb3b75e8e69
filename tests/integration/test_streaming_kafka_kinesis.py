"""The kafka and kinesis streaming destinations against a real Apache Kafka broker (KRaft, from its Maven
Central jars) and moto's Kinesis server on loopback: one record per changed profile, key / partition key =
profile id, exact payloads validated against the JSON Schema, metrics that reconcile."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.kinesis_faults import KinesisFaults
from servers.processes import S3_KEY_ID, S3_SECRET, MotoServer
from servers.streaming import KafkaBroker
from streaming_lake import context, qualified, valid, workspace_with, write_day

from cdp.delta_io import read_table
from cdp.errors import DestinationError
from cdp.lake import DELIVERY_FAILURES, DELIVERY_LEDGER, DESTINATION_METRICS
from jobs import check_quality, export

D1 = dt.date(2026, 11, 25)
MAPPING = """mapping:
  - {source: "identity:crm_id", name: crm_id}
  - {source: first_name}
"""
KAFKA = "name: bus\ntype: kafka\nconnection: bus\ntopic: profile-changes\naudiences: [gold_members]\n" + MAPPING
KINESIS = ("name: stream\ntype: kinesis\nconnection: stream\nstream: profile-changes\naudiences: [gold_members]\n"
           "batching: {mode: configured, max_messages: 500}\n" + MAPPING)
PEOPLE = {"p1": ("C1", None, "Ann", 1), "p2": ("C2", None, "Bob", 2), "p3": ("C3", None, "Cy", 3)}


def expected(dest: str, pid: str, crm: str, name: str) -> dict[str, Any]:
    return {"profileId": pid, "destination": dest, "runDate": "2026-11-25", "runId": "scheduled__2026-11-25",
            "attributes": {"first_name": name}, "identityMap": {"crm_id": [{"id": crm}]},
            "segmentMembership": {"gold_members": {"status": "realized", "lastQualificationTime": qualified(D1)
                                                   .strftime("%Y-%m-%dT%H:%M:%SZ")}}}


@pytest.fixture()
def lake_and_ws(spark: SparkSession, tmp_path: Path) -> Any:
    _, ws, settings = workspace_with(tmp_path, {"bus": KAFKA, "stream": KINESIS})
    ctx = context(settings, D1)
    write_day(spark, ctx.lake, D1, PEOPLE, {p: ("realized", D1) for p in PEOPLE})
    return ws, ctx


def ledger_ids(spark: SparkSession, ctx: Any, dest: str) -> dict[str, str]:
    rows = read_table(spark, ctx.lake.path(DELIVERY_LEDGER)).where(F.col("destination") == dest).collect()
    return {r["profile_id"]: r["message_id"] for r in rows}


def metrics(spark: SparkSession, ctx: Any, dest: str) -> tuple[Any, ...]:
    row = read_table(spark, ctx.lake.path(DESTINATION_METRICS)).where(F.col("destination") == dest).first()
    assert row is not None
    return (row["type"], row["received"], row["activated"], row["failed"], row["rows"], row["status"])


def test_kafka_records_keyed_by_profile(spark: SparkSession, lake_and_ws: Any, kafka_broker: KafkaBroker,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ws, ctx = lake_and_ws
    kafka_broker.create_topic("profile-changes")
    monkeypatch.setenv("AIRFLOW_CONN_BUS", json.dumps(kafka_broker.connection()))
    counts = export.run(spark, ws, ctx, "bus")
    records = kafka_broker.consume("profile-changes", expected=3)
    ids = ledger_ids(spark, ctx, "bus")
    got = {key.decode(): (json.loads(value), headers["message_id"].decode()) for key, value, headers in records}
    assert len(records) == 3  # no duplicate
    assert {k: {f: v for f, v in valid(m).items() if f != "messageId"} for k, (m, _) in got.items()} == {
        p: expected("bus", p, crm, name) for p, (crm, _, name, _) in PEOPLE.items()}
    assert {k: (m["messageId"], header) for k, (m, header) in got.items()} == {p: (i, i) for p, i in ids.items()}
    assert (counts["received"], counts["activated"], counts["failed"]) == (3, 3, 0)
    assert metrics(spark, ctx, "bus") == ("kafka", 3, 3, 0, 3, "delivered")
    check_quality.run(spark, ws, ctx, "exports")


def test_kinesis_records_keyed_by_profile(spark: SparkSession, lake_and_ws: Any, moto_server: MotoServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ws, ctx = lake_and_ws
    client = boto3.client("kinesis", endpoint_url=moto_server.url, region_name="us-east-1",
                          aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
    client.create_stream(StreamName="profile-changes", ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName="profile-changes", WaiterConfig={"Delay": 0.2})
    monkeypatch.setenv("AIRFLOW_CONN_STREAM", json.dumps({"conn_type": "aws", "login": S3_KEY_ID, "password": S3_SECRET,
                                                          "extra": {"endpoint_url": moto_server.url,
                                                                    "region_name": "us-east-1"}}))
    counts = export.run(spark, ws, ctx, "stream")
    shard = client.describe_stream(StreamName="profile-changes")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamName="profile-changes", ShardId=shard,
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = client.get_records(ShardIterator=iterator, Limit=100)["Records"]
    ids = ledger_ids(spark, ctx, "stream")
    got = {r["PartitionKey"]: json.loads(r["Data"]) for r in records}
    assert len(records) == 3
    assert {k: {f: v for f, v in valid(m).items() if f != "messageId"} for k, m in got.items()} == {
        p: expected("stream", p, crm, name) for p, (crm, _, name, _) in PEOPLE.items()}
    assert {k: m["messageId"] for k, m in got.items()} == ids
    assert (counts["received"], counts["activated"], counts["failed"]) == (3, 3, 0)
    assert metrics(spark, ctx, "stream") == ("kinesis", 3, 3, 0, 3, "delivered")
    check_quality.run(spark, ws, ctx, "exports")


THROTTLED = ("name: throttled\ntype: kinesis\nconnection: throttled\nstream: throttled-changes\n"
             "audiences: [gold_members]\nbatching: {mode: configured, max_messages: 500}\n"
             "retry: {attempts: 2, initial_wait_seconds: 0.05, max_wait_seconds: 0.1}\n" + MAPPING)


def stream_records(client: Any, stream: str) -> list[dict[str, Any]]:
    shard = client.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard,
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return list(client.get_records(ShardIterator=iterator, Limit=100)["Records"])


def test_kinesis_records_refused_inside_an_accepted_call_are_retried(
        spark: SparkSession, tmp_path: Path, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """PutRecords accepted with some records refused (a shard over its throughput): only those are sent again;
    one refused on every attempt fails the task after the others are recorded, and the task's retry sends it
    alone."""
    _, ws, settings = workspace_with(tmp_path, {"throttled": THROTTLED})
    ctx = context(settings, D1)
    write_day(spark, ctx.lake, D1, PEOPLE, {p: ("realized", D1) for p in PEOPLE})
    client = boto3.client("kinesis", endpoint_url=moto_server.url, region_name="us-east-1",
                          aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
    client.create_stream(StreamName="throttled-changes", ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName="throttled-changes", WaiterConfig={"Delay": 0.2})
    with KinesisFaults(moto_server.port) as faults:
        monkeypatch.setenv("AIRFLOW_CONN_THROTTLED", json.dumps({
            "conn_type": "aws", "login": S3_KEY_ID, "password": S3_SECRET,
            "extra": {"endpoint_url": faults.url, "region_name": "us-east-1"}}))
        faults.fail("p2", times=1)  # refused once: the second attempt delivers it
        faults.fail("p3", times=2)  # refused on both attempts of the run
        message = ("destination throttled: 1 message(s) not acknowledged after 2 attempt(s) "
                   "(kinesis_ProvisionedThroughputExceededException: 1); the next attempt or run sends only what "
                   "was not acknowledged, with the same message ids")
        with pytest.raises(DestinationError, match=re.escape(message)):
            export.run(spark, ws, ctx, "throttled")
        assert sorted(r["PartitionKey"] for r in stream_records(client, "throttled-changes")) == ["p1", "p2"]
        assert metrics(spark, ctx, "throttled") == ("kinesis", 3, 2, 1, 2, "failed")
        failures = read_table(spark, ctx.lake.path(DELIVERY_FAILURES)).where(F.col("destination") == "throttled")
        assert [(r["profile_id"], r["error_class"], r["attempts"]) for r in failures.collect()] == [
            ("p3", "kinesis_ProvisionedThroughputExceededException", 2)]

        counts = export.run(spark, ws, ctx, "throttled")  # Airflow's retry of the task: the shard has capacity
        assert sorted(faults.refused) == ["p2", "p3", "p3"]  # the partitions send in any order
    records = stream_records(client, "throttled-changes")
    assert sorted(r["PartitionKey"] for r in records) == ["p1", "p2", "p3"]  # each once
    assert {r["PartitionKey"]: json.loads(r["Data"])["messageId"] for r in records} == ledger_ids(
        spark, ctx, "throttled")
    assert (counts["received"], counts["activated"], counts["failed"]) == (3, 3, 0)
    assert metrics(spark, ctx, "throttled") == ("kinesis", 3, 3, 0, 3, "delivered")
    assert read_table(spark, ctx.lake.path(DELIVERY_FAILURES)).where(F.col("destination") == "throttled").count() == 0


def test_kafka_over_sasl_ssl_as_to_event_hubs(spark: SparkSession, lake_and_ws: Any, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A broker that takes SASL_SSL with PLAIN only, and the connection written as for Azure Event Hubs' Kafka
    endpoint (login ``$ConnectionString``, password the namespace's connection string, the broker's CA): the
    records arrive, and the secret appears in no log."""
    ws, ctx = lake_and_ws
    secret = ("Endpoint=sb://cdp-test.servicebus.windows.net/;SharedAccessKeyName=send;"
              f"SharedAccessKey={uuid.uuid4().hex}=")
    caplog.set_level(logging.DEBUG)
    with KafkaBroker(sasl_users={"$ConnectionString": secret}) as broker:
        broker.create_topic("profile-changes")
        monkeypatch.setenv("AIRFLOW_CONN_BUS", json.dumps(broker.sasl_connection("$ConnectionString", secret)))
        counts = export.run(spark, ws, ctx, "bus")
        records = broker.consume("profile-changes", expected=3)
    assert sorted(key.decode() for key, _, _ in records) == ["p1", "p2", "p3"]
    assert {key.decode(): {f: v for f, v in valid(json.loads(value)).items() if f != "messageId"}
            for key, value, _ in records} == {
        p: expected("bus", p, crm, name) for p, (crm, _, name, _) in PEOPLE.items()}
    assert (counts["received"], counts["activated"], counts["failed"]) == (3, 3, 0)
    assert metrics(spark, ctx, "bus") == ("kafka", 3, 3, 0, 3, "delivered")
    assert secret not in caplog.text and "SharedAccessKey=" not in caplog.text
