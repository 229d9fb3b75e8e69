"""An incremental identity resolution gives exactly what a full rebuild gives, day after day.

Seeded random records over four days exercise every way a component changes: new identities,
links seen again, CRM records whose later version carries another e-mail or only a phone (the old
link stays: the graph is cumulative), e-mails shared by CRM ids (the unique rule), a component above
a small identity cap, cookie links that expire (link_ttl_days), phones without a default region and
persons nobody touches after day one (carried over, not recomputed). Lake ``auto`` runs incrementally
(reading only each day's batch); lake ``full`` rebuilds every day from the whole staging history; every
table the step writes must be identical, also after a day is re-run with changed files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import read_table, replace_slice
from cdp.lake import (
    DATASET,
    IDENTITY_AUDIT,
    IDENTITY_LINKS,
    IDENTITY_MAP,
    IDENTITY_NODES,
    IDENTITY_RUNS,
    PROFILE_ID_CHANGES,
    STAGING,
    Lake,
    TableSpec,
    date_literal,
)
from cdp.run_context import RunContext
from cdp.schemas import dataset_struct
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs.resolve_identities import config_fingerprint, incremental_start, read_previous_map, run

DAYS = [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3), dt.date(2024, 3, 4)]
CAP = 6
COOKIE_TTL = 2  # links to a cookie not seen again for 2 days expire
TABLES = (IDENTITY_MAP, IDENTITY_AUDIT, PROFILE_ID_CHANGES, IDENTITY_LINKS, IDENTITY_NODES)


@pytest.fixture(scope="module")
def ws(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The example workspace with an identity cap small enough for the generated data to hit it, a link TTL
    on cookies and a phone namespace without a default region."""
    root = tmp_path_factory.mktemp("ws") / "retail"
    shutil.copytree(repo_root / "examples" / "retail", root)
    config = yaml.safe_load((root / "workspace.yaml").read_text())
    config.setdefault("guardrails", {})["max_identities_per_graph"] = CAP
    (root / "workspace.yaml").write_text(yaml.safe_dump(config))
    namespaces = yaml.safe_load((root / "namespaces.yaml").read_text())
    for ns in namespaces["namespaces"]:
        if ns["code"] == "ecid":
            ns["link_ttl_days"] = COOKIE_TTL
        ns.pop("default_region", None)
    (root / "namespaces.yaml").write_text(yaml.safe_dump(namespaces))
    return load_workspace(root)


def generate(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Records of the four days, each with its ``_batch_date``."""
    rng = random.Random(seed)
    data: dict[str, list[dict[str, Any]]] = {"crm_profiles": [], "loyalty_members": [], "web_events": [],
                                              "email_events": []}
    shared = ["family@x.com", "shop@x.com"]
    n = 0
    for day_index, day in enumerate(DAYS):
        def ts(hour: int, day: dt.date = day) -> dt.datetime:
            return dt.datetime.combine(day, dt.time(hour))
        # Day one creates most persons; later days touch a few of them and add some.
        crm_ids = range(0, 24) if day_index == 0 else rng.sample(range(0, 30), 6)
        for c in crm_ids:
            email = rng.choice(shared) if rng.random() < 0.15 else f"c{c}.{rng.randint(0, 1 if day_index else 0)}@x.com"
            # Later versions may drop the e-mail (only a phone); phones without a country code are invalid here.
            if day_index and rng.random() < 0.3:
                email = None
            phone = rng.choice([None, f"+33 6 12 34 {c:02d} {day_index:02d}", f"06 12 34 {c:02d} 00"])
            data["crm_profiles"].append({"crm_id": f"C{c}", "email": email, "phone": phone, "updated_at": ts(8),
                                         "_batch_date": day, "_record_ts": ts(8 + day_index)})
        if day_index < 2:  # C99 first with an e-mail, then a version with only a phone
            data["crm_profiles"].append({"crm_id": "C99", "email": "keep@x.com" if day_index == 0 else None,
                                         "phone": "+33 6 99 99 99 99" if day_index == 1 else None,
                                         "updated_at": ts(8), "_batch_date": day, "_record_ts": ts(8)})
        if day_index == 0:
            data["loyalty_members"].append({"loyalty_id": "L99", "email": "keep@x.com", "updated_at": ts(9),
                                            "_batch_date": day, "_record_ts": ts(9)})
        for c in (range(0, 12) if day_index == 0 else rng.sample(range(0, 14), 3)):
            data["loyalty_members"].append({"loyalty_id": f"L{c}", "email": f"c{c}.0@x.com", "updated_at": ts(9),
                                            "_batch_date": day, "_record_ts": ts(9)})
        for _ in range(30 if day_index == 0 else 6):
            n += 1
            person = rng.randrange(0, 30)
            # a shared cookie (a family tablet) links many persons: the cap and the unique rule apply
            ecid = "E-tablet" if rng.random() < 0.2 else f"E{person}.{rng.randint(0, 2)}"
            data["web_events"].append({"event_id": f"w{n}", "event_type": "page_view", "timestamp": ts(10),
                                       "ecid": ecid, "crm_id": f"C{person}" if rng.random() < 0.7 else None,
                                       "_batch_date": day, "_record_ts": ts(10 + rng.randint(0, 5))})
        for k in range(3):  # person 0 collects cookies until it passes the identity cap
            n += 1
            data["web_events"].append({"event_id": f"w{n}", "event_type": "page_view", "timestamp": ts(12),
                                       "ecid": f"E0.cookie{day_index}.{k}", "crm_id": "C0", "_batch_date": day,
                                       "_record_ts": ts(12)})
        for _ in range(8 if day_index == 0 else 3):
            n += 1
            data["email_events"].append({"event_id": f"m{n}", "event_type": "open", "timestamp": ts(11),
                                         "email": f"c{rng.randrange(0, 40)}.0@x.com", "_batch_date": day,
                                         "_record_ts": ts(11)})
    return data


def write_lake(spark: SparkSession, ws: Workspace, lake: str, data: dict[str, list[dict[str, Any]]]) -> None:
    """Dataset tables as ingest leaves them after the last day, and the staging history of every batch."""
    for dataset, records in data.items():
        schema = ws.schema_of(dataset)
        struct = dataset_struct(schema)
        rows = [{"_source_file": f"{dataset}/{r['_batch_date']}", "_row_number": i, **r}
                for i, r in enumerate(records)]
        staging = spark.createDataFrame([tuple(r.get(f.name) for f in struct.fields) for r in rows], struct)
        staging.write.format("delta").save(Lake(lake).path(STAGING, dataset))
        if schema.class_ == "profile":
            key = schema.primary_identity
            assert key is not None
            latest: dict[str, dict[str, Any]] = {}
            for r in rows:
                latest[r[key.name]] = r  # records are in batch order: the last one is the newest
            rows = list(latest.values())
        table = spark.createDataFrame([tuple(r.get(f.name) for f in struct.fields) for r in rows], struct)
        table.write.format("delta").save(Lake(lake).path(DATASET, dataset))


def snapshot(spark: SparkSession, lake: str, table: TableSpec, day: dt.date) -> set[tuple[Any, ...]]:
    rows = read_table(spark, Lake(lake).path(table)).where(F.col("run_date") == day).collect()
    return {tuple(r) for r in rows}


def context(ws: Workspace, lake: str, day: dt.date) -> RunContext:
    return RunContext(day, "test", Settings(workspace=str(ws.root), lake=lake, landing=lake, exports=lake))


def assert_same_day(spark: SparkSession, lakes: dict[str, str], day: dt.date) -> None:
    for table in TABLES:
        assert snapshot(spark, lakes["auto"], table, day) == snapshot(spark, lakes["full"], table, day), \
            f"{table.name} of {day} differs between the incremental and the full run"


def same_metrics(auto: dict[str, int], full: dict[str, int]) -> bool:
    """Equal but for what an incremental run does not do: read the whole history, recompute every identity."""
    skip = {"recomputed_identities", "records_read"}
    return {k: v for k, v in auto.items() if k not in skip} == {k: v for k, v in full.items() if k not in skip}


def test_incremental_runs_equal_full_rebuilds(spark: SparkSession, ws: Workspace, tmp_path: Path) -> None:
    data = generate(seed=11)
    lakes = {mode: str(tmp_path / mode) for mode in ("auto", "full")}
    write_lake(spark, ws, lakes["auto"], data)
    # Day one has no previous run: both modes compute it in full. Computed once, then copied.
    run(spark, ws, context(ws, lakes["auto"], DAYS[0]))
    shutil.copytree(lakes["auto"], lakes["full"])
    for day in DAYS[1:]:
        metrics = {mode: run(spark, ws, context(ws, lake, day), mode) for mode, lake in lakes.items()}
        assert_same_day(spark, lakes, day)
        auto, full = metrics["auto"], metrics["full"]
        assert same_metrics(auto, full)
        how = {mode: read_table(spark, Lake(lake).path(IDENTITY_RUNS)).where(F.col("run_date") == day).first()
               for mode, lake in lakes.items()}
        assert (how["auto"]["mode"], how["auto"]["reason"]) == (
            "incremental", f"components touched since the run of {day - dt.timedelta(days=1)}")
        assert (how["full"]["mode"], how["full"]["reason"]) == ("full", "full rebuild requested")
        # Only part of the graph was recomputed, only the day's batch read; the full run did both in full.
        assert 0 < auto["recomputed_identities"] < auto["identities"] == full["recomputed_identities"]
        day_records = sum(1 for rows in data.values() for r in rows if r["_batch_date"] == day)
        history = sum(1 for rows in data.values() for r in rows if r["_batch_date"] <= day)
        assert (auto["records_read"], full["records_read"]) == (day_records, history)
    # The data exercised what it is meant to: both collapse rules, expiry and both kinds of profile id change.
    reasons = {r[2] for day in DAYS[1:] for r in snapshot(spark, lakes["auto"], IDENTITY_AUDIT, day)}
    assert reasons == {"unique_namespace", "identity_cap", "link_expired"}
    changes = {r["change"] for r in read_table(spark, Lake(lakes["auto"]).path(PROFILE_ID_CHANGES)).collect()}
    assert changes == {"merge", "split"}
    # Phones without a country code were dropped and counted, those with one linked.
    assert metrics["auto"]["dropped.phone.invalid_phone"] > 0
    last_map = snapshot(spark, lakes["auto"], IDENTITY_MAP, DAYS[-1])
    assert any(r[1] == "phone" and r[2].startswith("+336123") for r in last_map)
    # C99's newest version carries only a phone: its e-mail keeps its link, so the loyalty member who used
    # it stays in C99's profile, and the e-mail keeps the day it was first seen.
    by_value = {(r[1], r[2]): r for r in last_map}
    c99 = hashlib.sha256(b"crm_id:C99").hexdigest()[:20]
    assert {key: (by_value[key][4], by_value[key][5]) for key in
            [("crm_id", "C99"), ("email", "keep@x.com"), ("loyalty_id", "L99"), ("phone", "+33699999999")]} == {
        ("crm_id", "C99"): (c99, DAYS[0]), ("email", "keep@x.com"): (c99, DAYS[0]),
        ("loyalty_id", "L99"): (c99, DAYS[0]), ("phone", "+33699999999"): (c99, DAYS[1])}

    # Re-running a day after its files changed gives what only the new files would have given: both lakes
    # replace the day's staging, then re-run it (auto from the day before, never from its own attempt).
    redo = DAYS[2]
    for lake in lakes.values():
        struct = dataset_struct(ws.schema_of("crm_profiles"))
        fixed = [{"crm_id": "C1", "email": "fixed@x.com", "_source_file": "crm_profiles/fixed", "_row_number": 1,
                  "_batch_date": redo, "_record_ts": dt.datetime.combine(redo, dt.time(8))}]
        replace_slice(spark.createDataFrame([tuple(r.get(f.name) for f in struct.fields) for r in fixed], struct),
                      Lake(lake).path(STAGING, "crm_profiles"), f"_batch_date = {date_literal(redo)}")
    before = snapshot(spark, lakes["auto"], IDENTITY_NODES, redo)
    metrics = {mode: run(spark, ws, context(ws, lake, redo), mode) for mode, lake in lakes.items()}
    assert same_metrics(metrics["auto"], metrics["full"])
    assert_same_day(spark, lakes, redo)
    after = {(r[2], r[3]) for r in snapshot(spark, lakes["auto"], IDENTITY_NODES, redo)}
    assert ("email", "fixed@x.com") in after
    only_old = {(r[2], r[3]) for r in before} - after
    # The replaced CRM records of that day brought identities nobody else carried: they are gone.
    assert only_old, "the replaced batch should have held identities of its own"
    auto_run = read_table(spark, Lake(lakes["auto"]).path(IDENTITY_RUNS)).where(F.col("run_date") == redo).first()
    assert auto_run is not None and (auto_run["mode"], auto_run["previous_run_date"]) == ("incremental", DAYS[1])

    # A changed identity setting makes the next run full: the carried components would be stale.
    first_run = read_table(spark, Lake(lakes["auto"]).path(IDENTITY_RUNS)).where(F.col("run_date") == DAYS[0]).first()
    assert first_run is not None and (first_run["mode"], first_run["reason"]) == ("full", "no previous run")
    previous_map, previous_date = read_previous_map(spark, Lake(lakes["auto"]), DAYS[2])
    assert previous_date == DAYS[1]
    ttl = ws.config.guardrails.link_ttl_days
    for changed in (config_fingerprint(ws.namespaces, CAP - 1, ttl), config_fingerprint(ws.namespaces, CAP, 30)):
        start, reason = incremental_start(spark, Lake(lakes["auto"]), previous_map, previous_date, changed, "auto")
        assert (start, reason) == (None, f"namespaces, identity cap or link TTL changed since the run of {DAYS[1]}, "
                                         "or it was written before identities and links were cumulative")
    start, reason = incremental_start(spark, Lake(lakes["auto"]), previous_map, previous_date,
                                      config_fingerprint(ws.namespaces, CAP, ttl), "auto")
    assert start is not None and start.run_date == DAYS[1]
