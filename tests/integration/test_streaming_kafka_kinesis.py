"""The kafka and kinesis streaming destinations against a real Apache Kafka broker (KRaft, from its Maven
Central jars) and moto's Kinesis server on loopback: one record per changed profile, key / partition key =
profile id, exact payloads validated against the JSON Schema, metrics that reconcile."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.processes import S3_KEY_ID, S3_SECRET, MotoServer
from servers.streaming import KafkaBroker
from streaming_lake import context, qualified, valid, workspace_with, write_day

from cdp.delta_io import read_table
from cdp.lake import DELIVERY_LEDGER, DESTINATION_METRICS
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
