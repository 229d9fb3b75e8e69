"""Consent for a streaming destination against the real HTTP receiver on loopback (tests/servers/streaming.py).

Day 1: only the profile that consented is sent; the others are excluded and counted (``consent``). Day 2: the one
that withdraws consent gets one exit message carrying the values it was last delivered with (its new points are
not disclosed); the one that consents now is sent as it is; the one still without consent is not counted again.
Day 3: nothing more is sent to the one that withdrew, although its points changed again.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from servers.streaming import HttpReceiver
from streaming_lake import context, qualified, valid, workspace_with

from cdp.delta_io import read_table
from cdp.job import COMMITTED, StepKey, mark_step
from cdp.lake import AUDIENCE_MEMBERSHIP, DESTINATION_METRICS, PROFILES, Lake
from jobs import check_quality, export

D1, D2, D3 = dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)
DEST = """name: crm_api
type: http
connection: crm_api
path: /v1/profiles
audiences: [gold_members]
marketing_actions: [direct_mail]
consent: [marketing.direct_mail]
mapping:
  - {source: "identity:crm_id", name: crm_id}
  - {source: first_name, name: firstName}
  - {source: points}
"""
PROFILE_SCHEMA = T.StructType([
    T.StructField("run_date", T.DateType()), T.StructField("profile_id", T.StringType()),
    T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
    T.StructField("first_name", T.StringType()), T.StructField("points", T.LongType()),
    T.StructField("consent_marketing", T.BooleanType()),
])
MEMBERSHIP = ("run_date date, audience_id string, profile_id string, status string, "
              "last_qualification_time timestamp, status_since date")


def write_day(spark: SparkSession, lake: Lake, day: dt.date, people: dict[str, tuple[str, int, bool | None]]) -> None:
    """One day's profiles (first name, points, consent_marketing; crm id C<n> of p<n>), all gold_members since D1."""
    rows = [(day, pid, {"crm_id": [f"C{pid[1:]}"]}, name, points, consent)
            for pid, (name, points, consent) in people.items()]
    spark.createDataFrame(rows, PROFILE_SCHEMA).write.format("delta").mode("append").partitionBy("run_date").save(
        lake.path(PROFILES))
    status = "realized" if day == D1 else "existing"
    members = [(day, "gold_members", pid, status, qualified(day), D1) for pid in people]
    spark.createDataFrame(members, MEMBERSHIP).write.format("delta").mode("append").partitionBy("run_date").save(
        lake.path(AUDIENCE_MEMBERSHIP))
    mark_step(lake, day, StepKey("evaluate_audiences"), COMMITTED, f"eval_{day}")


def message(pid: str, day: dt.date, name: str, points: int, status: str, since: dt.date) -> dict[str, Any]:
    return {"profileId": pid, "destination": "crm_api", "runDate": day.isoformat(), "runId": f"scheduled__{day}",
            "attributes": {"firstName": name, "points": points}, "identityMap": {"crm_id": [{"id": f"C{pid[1:]}"}]},
            "segmentMembership": {"gold_members": {
                "status": status, "lastQualificationTime": qualified(since).strftime("%Y-%m-%dT%H:%M:%SZ")}}}


def received(receiver: HttpReceiver) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in valid(m).items() if k != "messageId"} for m in receiver.messages()),
                  key=lambda m: str(m["profileId"]))


def metrics_of(spark: SparkSession, lake: Lake, day: dt.date) -> tuple[Any, ...]:
    row = read_table(spark, lake.path(DESTINATION_METRICS)).where(F.col("run_date") == F.lit(day)).first()
    assert row is not None
    return row["received"], row["activated"], row["excluded"], row["failed"], row["status"]


@pytest.fixture()
def receiver(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> HttpReceiver:
    http_receiver.control("reset")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_API", json.dumps(http_receiver.connection()))
    monkeypatch.setenv("CDP_STREAM_PARTITIONS", "1")
    return http_receiver


def test_consent_given_refused_and_withdrawn(spark: SparkSession, tmp_path: Path, receiver: HttpReceiver) -> None:
    _, ws, settings = workspace_with(tmp_path, {"crm_api": DEST})
    lake = context(settings, D1).lake
    no_consent = {"consent": 0, "no_identity": 0, "missing_mandatory": 0}

    write_day(spark, lake, D1, {"p1": ("Ann", 100, True), "p2": ("Bob", 200, False), "p3": ("Cy", 300, None)})
    export.run(spark, ws, context(settings, D1), "crm_api")
    assert received(receiver) == [message("p1", D1, "Ann", 100, "realized", D1)]
    assert metrics_of(spark, lake, D1) == (3, 1, {**no_consent, "consent": 2}, 0, "delivered")
    check_quality.run(spark, ws, context(settings, D1), "exports")

    # Ann withdraws (and her points change), Bob consents, Cy still has not answered.
    receiver.control("reset")
    write_day(spark, lake, D2, {"p1": ("Ann", 150, False), "p2": ("Bob", 200, True), "p3": ("Cy", 300, None)})
    export.run(spark, ws, context(settings, D2), "crm_api")
    assert received(receiver) == [
        {**message("p1", D2, "Ann", 100, "exited", D1)},  # the values Ann was last delivered with: 100 points
        message("p2", D2, "Bob", 200, "realized", D2)]
    assert metrics_of(spark, lake, D2) == (2, 2, no_consent, 0, "delivered")
    check_quality.run(spark, ws, context(settings, D2), "exports")

    # Nothing more for Ann, whatever changes, until she consents again.
    receiver.control("reset")
    write_day(spark, lake, D3, {"p1": ("Ann", 175, False), "p2": ("Bob", 200, True), "p3": ("Cy", 300, None)})
    export.run(spark, ws, context(settings, D3), "crm_api")
    assert receiver.messages() == []
    assert metrics_of(spark, lake, D3) == (0, 0, no_consent, 0, "delivered")
