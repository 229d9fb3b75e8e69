"""Identity resolution then profile building on Delta tables of the example workspace."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from cdp.delta_io import read_table
from cdp.lake import DATASET, IDENTITY_MAP, PROFILES, STAGING, Lake
from cdp.run_context import RunContext
from cdp.schemas import dataset_struct
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import build_profiles, resolve_identities

RUN = dt.date(2024, 3, 1)
BEFORE, AFTER = dt.date(2024, 2, 28), dt.date(2024, 3, 2)

DATA: dict[str, list[dict[str, Any]]] = {
    "crm_profiles": [
        {"crm_id": "C1", "email": "Ann@X.com ", "phone": "+33 6 12 34 56 78", "first_name": "Ann",
         "last_name": "Lee", "birth_date": dt.date(1990, 5, 1), "country": "FR", "city": "Paris",
         "consent_marketing": True, "updated_at": dt.datetime(2024, 3, 1, 9), "_record_ts": dt.datetime(2024, 3, 1, 9)},
        {"crm_id": "C2", "email": "bob@y.com", "first_name": "Bob", "country": "DE", "city": "Berlin",
         "updated_at": dt.datetime(2024, 2, 27), "_record_ts": dt.datetime(2024, 2, 27), "_batch_date": BEFORE},
        # Ingested after the run date: a run of RUN (or its backfill) must not see it.
        {"crm_id": "C3", "email": "ann@x.com", "city": "Nice", "updated_at": dt.datetime(2024, 3, 2),
         "_record_ts": dt.datetime(2024, 3, 2), "_batch_date": AFTER},
    ],
    "loyalty_members": [
        {"loyalty_id": "L1", "email": "ann@x.com", "tier": "gold", "points": 1200, "joined_on": dt.date(2020, 1, 1),
         "updated_at": dt.datetime(2024, 2, 28), "_record_ts": dt.datetime(2024, 2, 28), "_batch_date": BEFORE},
        {"loyalty_id": "L2", "tier": "bronze", "points": 10, "updated_at": dt.datetime(2024, 2, 1),
         "_record_ts": dt.datetime(2024, 2, 1)},
    ],
    "web_events": [
        {"event_id": "w1", "event_type": "page_view", "timestamp": dt.datetime(2024, 3, 1, 10), "ecid": "E1",
         "crm_id": "C1"},
        {"event_id": "w2", "event_type": "page_view", "timestamp": dt.datetime(2024, 3, 1, 11), "ecid": "E2"},
    ],
    "email_events": [
        {"event_id": "m1", "event_type": "open", "timestamp": dt.datetime(2024, 3, 1, 8), "email": "BOB@y.com "},
    ],
}


def pid(namespace: str, value: str) -> str:
    return hashlib.sha256(f"{namespace}:{value}".encode()).hexdigest()[:20]


def write_datasets(spark: SparkSession, ws: Workspace, lake: str) -> None:
    for dataset, records in DATA.items():
        struct = dataset_struct(ws.schema_of(dataset))
        rows = []
        for i, record in enumerate(records):
            full = {"_source_file": f"{dataset}/part-0", "_row_number": i + 1, "_batch_date": RUN,
                    "_record_ts": dt.datetime(2024, 3, 1), **record}
            rows.append(tuple(full.get(f.name) for f in struct.fields))
        df = spark.createDataFrame(rows, struct)
        df.write.format("delta").save(Lake(lake).path(DATASET, dataset))
        # Profile datasets read as of a run date before their latest batch are rebuilt from staging.
        df.write.format("delta").save(Lake(lake).path(STAGING, dataset))


def context(ws: Workspace, lake: str) -> RunContext:
    return RunContext(RUN, "test", Settings(workspace=str(ws.root), lake=lake, landing=lake, exports=lake))


COLUMNS = ["run_date", "profile_id", "identities", "identity_count", "dataset_last_update", "events_in_window",
           "crm_id", "email", "phone", "first_name",
           "last_name", "birth_date", "country", "city", "consent_marketing", "updated_at", "loyalty_id", "tier",
           "points", "joined_on"]

ANN = pid("crm_id", "C1")
BOB = pid("crm_id", "C2")
L2 = pid("loyalty_id", "L2")
E2 = pid("ecid", "E2")

EXPECTED = sorted([
    (RUN, ANN, {"crm_id": ["C1"], "ecid": ["E1"], "email": ["ann@x.com"], "loyalty_id": ["L1"],
                "phone": ["+33612345678"]}, 5,
     {"crm_profiles": dt.datetime(2024, 3, 1, 9), "loyalty_members": dt.datetime(2024, 2, 28)}, 1,
     "C1", "Ann@X.com ", "+33 6 12 34 56 78", "Ann", "Lee", dt.date(1990, 5, 1), "FR", "Paris", True,
     dt.datetime(2024, 3, 1, 9), "L1", "gold", 1200, dt.date(2020, 1, 1)),
    (RUN, BOB, {"crm_id": ["C2"], "email": ["bob@y.com"]}, 2, {"crm_profiles": dt.datetime(2024, 2, 27)}, 1,
     "C2", "bob@y.com", None, "Bob", None, None, "DE", "Berlin", None, dt.datetime(2024, 2, 27), None, None, None,
     None),
    (RUN, L2, {"loyalty_id": ["L2"]}, 1, {"loyalty_members": dt.datetime(2024, 2, 1)}, 0,
     None, None, None, None, None, None, None, None, None, dt.datetime(2024, 2, 1), "L2", "bronze", 10, None),
    (RUN, E2, {"ecid": ["E2"]}, 1, {}, 1, *[None] * 14),
], key=lambda row: row[1])


def profiles_table(spark: SparkSession, lake: str) -> list[tuple[Any, ...]]:
    table = read_table(spark, Lake(lake).path(PROFILES))
    assert table.columns == COLUMNS
    return [tuple(r) for r in table.orderBy("profile_id").collect()]


def test_resolve_then_build_profiles(spark: SparkSession, repo_root: Path, lake: str) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    write_datasets(spark, ws, lake)
    ctx = context(ws, lake)

    for _ in range(2):  # a rerun replaces the run date's slices with the same rows
        resolved = resolve_identities.run(spark, ws, ctx)
        built = build_profiles.run(spark, ws, ctx)
        # Seven records up to the run date (C3 comes later); a rerun starts from the run before, not from itself.
        assert resolved == {"records_read": 7, "identities": 9, "links": 5, "recomputed_identities": 9,
                            "profiles": 4, "max_identities_per_profile": 5, "links_dropped": 0,
                            "identities_dropped": 0, "links_expired": 0, "profile_merges": 0, "profile_splits": 0}
        assert built == {"profiles": 4, "profiles_with_attributes": 3}
        assert profiles_table(spark, lake) == EXPECTED

    identity_map = read_table(spark, Lake(lake).path(IDENTITY_MAP))
    assert identity_map.schema == IDENTITY_MAP.schema
    assert identity_map.count() == 9
    schema = read_table(spark, Lake(lake).path(PROFILES)).schema
    assert [f.name for f in schema if not f.nullable] == ["run_date", "profile_id", "identities", "identity_count"]


def test_dataset_precedence_workspace(spark: SparkSession, repo_root: Path, tmp_path: Path, lake: str) -> None:
    root = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", root)
    config = root / "workspace.yaml"
    config.write_text(config.read_text().replace(
        "merge_policy: timestamp_ordered", "merge_policy: dataset_precedence\ndataset_precedence: [loyalty_members]"))
    ws = load_workspace(root)
    write_datasets(spark, ws, lake)
    resolve_identities.run(spark, ws, context(ws, lake))
    build_profiles.run(spark, ws, context(ws, lake))

    rows = {row[1]: dict(zip(COLUMNS, row, strict=True)) for row in profiles_table(spark, lake)}
    ann = rows[ANN]
    # The loyalty record's values win for the attributes it has, although older than the CRM record.
    assert (ann["email"], ann["updated_at"], ann["tier"]) == ("ann@x.com", dt.datetime(2024, 2, 28), "gold")
    assert (ann["crm_id"], ann["city"], ann["phone"]) == ("C1", "Paris", "+33 6 12 34 56 78")
    assert rows[BOB]["email"] == "bob@y.com"
