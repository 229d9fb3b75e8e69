"""An incremental identity resolution gives exactly what a full rebuild gives, day after day.

Seeded random records over three days exercise every way a component changes: new identities,
links seen again, CRM records whose e-mail changes (a link disappears: splits), e-mails shared by
CRM ids (the unique rule), a component above a small identity cap, and persons nobody touches
after day one (carried over, not recomputed). Lake ``auto`` runs incrementally; lake ``full``
rebuilds every day; every table the step writes must be identical.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import read_table
from cdp.lake import DATASET, IDENTITY_AUDIT, IDENTITY_MAP, IDENTITY_RUNS, PROFILE_ID_CHANGES, STAGING, Lake, TableSpec
from cdp.run_context import RunContext
from cdp.schemas import dataset_struct
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs.resolve_identities import config_fingerprint, incremental_start, read_previous_map, run

DAYS = [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)]
CAP = 6


@pytest.fixture(scope="module")
def ws(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The example workspace with an identity cap small enough for the generated data to hit it."""
    root = tmp_path_factory.mktemp("ws") / "retail"
    shutil.copytree(repo_root / "examples" / "retail", root)
    config = yaml.safe_load((root / "workspace.yaml").read_text())
    config.setdefault("guardrails", {})["max_identities_per_graph"] = CAP
    (root / "workspace.yaml").write_text(yaml.safe_dump(config))
    return load_workspace(root)


def generate(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Records of the three days, each with its ``_batch_date``."""
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
            data["crm_profiles"].append({"crm_id": f"C{c}", "email": email, "updated_at": ts(8),
                                         "_batch_date": day, "_record_ts": ts(8 + day_index)})
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


def test_incremental_runs_equal_full_rebuilds(spark: SparkSession, ws: Workspace, tmp_path: Path) -> None:
    data = generate(seed=11)
    lakes = {mode: str(tmp_path / mode) for mode in ("auto", "full")}
    write_lake(spark, ws, lakes["auto"], data)
    # Day one has no previous run: both modes compute it in full. Computed once, then copied.
    run(spark, ws, context(ws, lakes["auto"], DAYS[0]))
    shutil.copytree(lakes["auto"], lakes["full"])
    for day in DAYS[1:]:
        metrics = {mode: run(spark, ws, context(ws, lake, day), mode) for mode, lake in lakes.items()}
        for table in (IDENTITY_MAP, IDENTITY_AUDIT, PROFILE_ID_CHANGES):
            assert snapshot(spark, lakes["auto"], table, day) == snapshot(spark, lakes["full"], table, day), \
                f"{table.name} of {day} differs between the incremental and the full run"
        auto, full = metrics["auto"], metrics["full"]
        assert {k: v for k, v in auto.items() if k != "recomputed_identities"} \
            == {k: v for k, v in full.items() if k != "recomputed_identities"}
        how = {mode: read_table(spark, Lake(lake).path(IDENTITY_RUNS)).where(F.col("run_date") == day).first()
               for mode, lake in lakes.items()}
        assert (how["auto"]["mode"], how["auto"]["reason"]) == (
            "incremental", f"components touched since the run of {day - dt.timedelta(days=1)}")
        assert (how["full"]["mode"], how["full"]["reason"]) == ("full", "full rebuild requested")
        # Only part of the graph was recomputed; the full run recomputed every identity.
        assert 0 < auto["recomputed_identities"] < auto["identities"] == full["recomputed_identities"]
    # The data exercised what it is meant to: both collapse rules and both kinds of profile id change.
    reasons = {r[2] for r in snapshot(spark, lakes["auto"], IDENTITY_AUDIT, DAYS[-1])}
    assert reasons == {"unique_namespace", "identity_cap"}
    changes = {r["change"] for r in read_table(spark, Lake(lakes["auto"]).path(PROFILE_ID_CHANGES)).collect()}
    assert changes == {"merge", "split"}

    # A changed identity setting makes the next run full: the carried components would be stale.
    first = read_table(spark, Lake(lakes["auto"]).path(IDENTITY_RUNS)).where(F.col("run_date") == DAYS[0]).first()
    assert first is not None and (first["mode"], first["reason"]) == ("full", "no previous run")
    previous_map, previous_date = read_previous_map(spark, Lake(lakes["auto"]), DAYS[2])
    assert previous_date == DAYS[1]
    start, reason = incremental_start(spark, Lake(lakes["auto"]), previous_map, previous_date,
                                      config_fingerprint(ws.namespaces, CAP - 1), "auto")
    assert (start, reason) == (None, f"namespaces or identity cap changed since the run of {DAYS[1]}")
    start, reason = incremental_start(spark, Lake(lakes["auto"]), previous_map, previous_date,
                                      config_fingerprint(ws.namespaces, CAP), "auto")
    assert start is not None and start.run_date == DAYS[1]
