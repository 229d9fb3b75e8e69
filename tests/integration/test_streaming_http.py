"""The http streaming destination against a real HTTP API on loopback (tests/servers/http_receiver.py).

Two days: the first back-fills every member through every fault the receiver injects (429 with
Retry-After, 500, a connection reset, an answer slower than the timeout, a 400 for one message of a
batch); the second sends only what changed (an attribute, an identity, an exit, an entry) and gives up on
the record that kept failing. Exact payloads, validated against the JSON Schema; no loss; duplicates only
for the batch whose answer came after the timeout, with the same message ids and idempotency key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.streaming import HttpReceiver
from streaming_lake import context, qualified, valid, workspace_with, write_day

from cdp.delta_io import read_table
from cdp.lake import DELIVERY_FAILURES, DELIVERY_LEDGER, DESTINATION_METRICS
from jobs import check_quality, export

D1, D2 = dt.date(2026, 11, 25), dt.date(2026, 11, 26)
DEST = """name: crm_api
type: http
connection: crm_api
path: /v1/profiles
audiences: [gold_members]
headers: {X-Team: crm}
batching: {mode: configured, max_messages: 2, max_seconds: 5}
retry: {attempts: 5, initial_wait_seconds: 0.05, max_wait_seconds: 2, give_up_after_days: 1}
mapping:
  - {source: "identity:crm_id", name: crm_id}
  - {source: "identity:email", hash: sha256}
  - {source: first_name, name: firstName}
  - {source: points}
"""
DAY1 = {"p1": ("C1", "ann@example.com", "Ann", 100), "p2": ("C2", None, "Bob", 200),
        "p3": ("C3", "cy@example.com", "Cy", 300), "p4": ("C4", None, "Dee", None),
        "p5": ("C5", None, "Eve", 500), "p7": ("C7", None, "Gus", 700)}
MEMBERS1 = {p: ("realized", D1) for p in ("p1", "p2", "p3", "p4", "p6", "p7")}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def qt(day: dt.date) -> str:
    return qualified(day).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected(pid: str, run_date: dt.date, crm: str, email: str | None, name: str, points: int | None,
             status: str, since: dt.date) -> dict[str, Any]:
    identity: dict[str, Any] = {"crm_id": [{"id": crm}]}
    if email:
        identity["email_lc_sha256"] = [{"id": sha(email)}]
    return {"profileId": pid, "destination": "crm_api", "runDate": run_date.isoformat(),
            "runId": f"scheduled__{run_date}", "attributes": {"firstName": name, "points": points},
            "identityMap": identity, "segmentMembership": {"gold_members": {"status": status,
                                                                            "lastQualificationTime": qt(since)}}}


def without_id(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in valid(message).items() if k != "messageId"}


@pytest.fixture()
def receiver(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> HttpReceiver:
    http_receiver.control("reset")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_API", json.dumps(http_receiver.connection()))
    # One sending partition: the faults below hit the batches in a known order.
    monkeypatch.setenv("CDP_STREAM_PARTITIONS", "1")
    return http_receiver


def metrics_row(spark: SparkSession, lake: Any, day: dt.date) -> dict[str, Any]:
    row = read_table(spark, lake.path(DESTINATION_METRICS)).where(F.col("run_date") == F.lit(day)).first()
    assert row is not None
    return {k: row[k] for k in ("received", "activated", "excluded", "failed", "failed_by", "files", "rows", "status",
                                "mode", "base_run_date", "error")}


def test_two_days_through_every_fault(spark: SparkSession, tmp_path: Path, receiver: HttpReceiver) -> None:
    _, ws, settings = workspace_with(tmp_path, {"crm_api": DEST})
    ctx = context(settings, D1)
    lake = ctx.lake
    # p6 has no identity at all: it is a member, but excluded (no_identity).
    write_day(spark, lake, D1, {**DAY1, "p6": (None, None, "Nobody", 1)}, MEMBERS1)

    # Batches (sorted by profile id, 2 each): [p1, p2], [p3, p4], [p7]. The first batch meets 429, 500, a
    # reset and an answer slower than the 2 s timeout before it is acknowledged; p4 is refused with a 400.
    receiver.control("faults", [{"status": 429, "retry_after": "1"}, {"status": 500}, {"reset": True},
                                {"slow": 2.5}, {"reject_profile": "p4"}])
    first = export.run(spark, ws, ctx, "crm_api")
    ledger = {r["profile_id"]: r.asDict() for r in read_table(spark, lake.path(DELIVERY_LEDGER)).collect()}
    failed_row = read_table(spark, lake.path(DELIVERY_FAILURES)).first()
    assert failed_row is not None
    p4_id = failed_row["message_id"]
    assert first["received"] == 6 and first["activated"] == 4 and first["failed"] == 1
    requests = receiver.requests()
    # Accepted requests: the slow one and its retry (the same batch), then p3 after the 400 split, then p7.
    assert [[m["profileId"] for m in r["messages"]] for r in requests] == [["p1", "p2"], ["p1", "p2"], ["p3"], ["p7"]]
    assert requests[0]["headers"]["idempotency-key"] == requests[1]["headers"]["idempotency-key"] == sha(
        f"{ledger['p1']['message_id']},{ledger['p2']['message_id']},")
    assert all(r["path"] == "/v1/profiles" and r["headers"]["x-team"] == "crm" and not r["gzip"] for r in requests)
    assert requests[0]["messages"] == requests[1]["messages"]  # a duplicate carries the same message ids
    messages = {m["profileId"]: m for m in receiver.messages()}
    assert {p: without_id(m) for p, m in messages.items()} == {
        "p1": expected("p1", D1, "C1", "ann@example.com", "Ann", 100, "realized", D1),
        "p2": expected("p2", D1, "C2", None, "Bob", 200, "realized", D1),
        "p3": expected("p3", D1, "C3", "cy@example.com", "Cy", 300, "realized", D1),
        "p7": expected("p7", D1, "C7", None, "Gus", 700, "realized", D1)}
    assert {p: m["messageId"] for p, m in messages.items()} == {
        p: ledger[p]["message_id"] for p in ("p1", "p2", "p3", "p7")}
    assert {p: r["status"] for p, r in ledger.items()} == {"p1": "delivered", "p2": "delivered", "p3": "delivered",
                                                           "p7": "delivered", "p6": "excluded"}
    failures = [r.asDict() for r in read_table(spark, lake.path(DELIVERY_FAILURES)).collect()]
    assert [(f["profile_id"], f["status"], f["error_class"], f["http_status"], f["response"],
             f["first_failed_run_date"]) for f in failures] == [
        ("p4", "failed", "http_400", 400, f'{{"error": "invalid record {p4_id}"}}', D1)]
    assert metrics_row(spark, lake, D1) == {
        "received": 6, "activated": 4, "excluded": {"consent": 0, "no_identity": 1, "missing_mandatory": 0},
        "failed": 1,
        "failed_by": {"http_400": 1}, "files": 0, "rows": 4, "status": "delivered_with_failures", "mode": "full",
        "base_run_date": None, "error": None}
    check_quality.run(spark, ws, ctx, "exports")  # the gate reconciles: activated = messages acknowledged

    # Day 2: p1's points change, p2 gains an e-mail, p3 leaves, p5 enters; p7 is unchanged; p4 still fails and
    # is older than give_up_after_days (1): given up, not sent.
    receiver.control("reset")
    day2 = {**DAY1, "p1": ("C1", "ann@example.com", "Ann", 150), "p2": ("C2", "bob@example.com", "Bob", 200)}
    write_day(spark, lake, D2, {**day2, "p6": (None, None, "Nobody", 1)}, {
        "p1": ("existing", D1), "p2": ("existing", D1), "p3": ("exited", D1), "p4": ("existing", D1),
        "p5": ("realized", D2), "p6": ("existing", D1), "p7": ("existing", D1)})
    second = export.run(spark, ws, context(settings, D2), "crm_api")
    got = sorted((without_id(m) for m in receiver.messages()), key=lambda m: m["profileId"])
    exited = expected("p3", D2, "C3", "cy@example.com", "Cy", 300, "exited", D1)
    assert got == [expected("p1", D2, "C1", "ann@example.com", "Ann", 150, "existing", D2),
                   expected("p2", D2, "C2", "bob@example.com", "Bob", 200, "existing", D2),
                   exited,
                   expected("p5", D2, "C5", None, "Eve", 500, "realized", D2)]
    assert second["received"] == 5 and second["activated"] == 4 and second["failed"] == 1
    assert metrics_row(spark, lake, D2) == {
        "received": 5, "activated": 4, "excluded": {"consent": 0, "no_identity": 0, "missing_mandatory": 0},
        "failed": 1,
        "failed_by": {"given_up": 1}, "files": 0, "rows": 4, "status": "delivered_with_failures",
        "mode": "incremental", "base_run_date": D1, "error": None}
    given_up = read_table(spark, lake.path(DELIVERY_FAILURES)).where(F.col("run_date") == F.lit(D2)).collect()
    assert [(r["profile_id"], r["status"], r["first_failed_run_date"]) for r in given_up] == [("p4", "given_up", D1)]
    check_quality.run(spark, ws, context(settings, D2), "exports")

    # A re-run of day 2 sends nothing again: every change is already acknowledged.
    receiver.control("reset")
    again = export.run(spark, ws, context(settings, D2), "crm_api")
    assert receiver.messages() == []
    assert (again["received"], again["activated"], again["failed"]) == (5, 4, 1)


RATE_LIMITED = """name: slow_api
type: http
connection: crm_api
path: /v1/slow
audiences: [gold_members]
batching: {mode: configured, max_messages: 1}
rate_limit: 8
mapping:
  - {source: "identity:crm_id", name: crm_id}
"""


def test_the_rate_limit_holds_across_the_sending_partitions(spark: SparkSession, tmp_path: Path,
                                                            receiver: HttpReceiver,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``rate_limit: 8`` is 8 messages a second for the destination, both sending partitions together (each a
    token bucket of 4/s with a burst of one second's worth): in any stretch of t seconds the endpoint gets at
    most 8 * (t + 1) messages, so 40 messages take at least 4 seconds from the first to the last; none is
    lost or sent twice."""
    monkeypatch.setenv("CDP_STREAM_PARTITIONS", "2")
    _, ws, settings = workspace_with(tmp_path, {"slow_api": RATE_LIMITED})
    ctx = context(settings, D1)
    people = {f"q{i:02d}": (f"R{i:02d}", None, f"N{i}", i) for i in range(40)}
    write_day(spark, ctx.lake, D1, people, {p: ("realized", D1) for p in people})
    counts = export.run(spark, ws, ctx, "slow_api")
    assert (counts["received"], counts["activated"], counts["failed"]) == (40, 40, 0)
    requests = [r for r in receiver.requests() if r["path"] == "/v1/slow" and r["status"] == 200]
    assert sorted(m["profileId"] for r in requests for m in r["messages"]) == sorted(people)  # each once
    times = sorted(r["received_at"] for r in requests)
    slack = 0.25  # the loopback hop between the sender's bucket and the receiver's clock
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= 8 * (times[j] - first + slack + 1), (i, j, times[j] - first)
    assert times[-1] - times[0] >= 4 - slack
