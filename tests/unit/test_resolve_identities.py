"""Identity resolution: records linked through shared identities end in one profile with a stable id."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import read_table
from cdp.lake import DATASET, IDENTITY_AUDIT, IDENTITY_MAP, PROFILE_ID_CHANGES, STAGING, Lake
from cdp.run_context import RunContext
from cdp.schemas import dataset_struct
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs.resolve_identities import (
    IdentityCollisionError,
    check_no_hash_collisions,
    resolve,
    run,
    transform_anchor_profile_ids,
    transform_record_identities,
)

D1, D2, D3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)


@pytest.fixture(scope="module")
def ws(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


def pid(namespace: str, value: str) -> str:
    return hashlib.sha256(f"{namespace}:{value}".encode()).hexdigest()[:20]


def dataset_df(spark: SparkSession, ws: Workspace, dataset: str, records: list[dict[str, Any]]) -> DataFrame:
    """Rows of an ingested dataset table: declared fields (absent = null) plus the metadata columns."""
    struct = dataset_struct(ws.schema_of(dataset))
    rows = []
    for i, record in enumerate(records):
        full = {"_source_file": f"{dataset}/part-0", "_row_number": i, "_batch_date": D1,
                "_record_ts": dt.datetime(2024, 3, 1, 12), **record}
        rows.append(tuple(full.get(f.name) for f in struct.fields))
    return spark.createDataFrame(rows, struct)


def records_of(spark: SparkSession, ws: Workspace, data: dict[str, list[dict[str, Any]]]) -> DataFrame:
    parts = [transform_record_identities(dataset_df(spark, ws, name, rows), ws.schema_of(name))
             for name, rows in data.items()]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def resolve_rows(spark: SparkSession, ws: Workspace,
                 data: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], Any]:
    """(namespace, value) -> identity map row, through the transforms and the graph."""
    out = resolve(records_of(spark, ws, data), ws.namespaces, 50, None, D3)
    check_no_hash_collisions(out["identities"])
    rows = out["identity_map"].collect()
    return {(r["namespace"], r["value"]): r for r in rows}


ANN = {
    "crm_profiles": [{"crm_id": "C1", "email": "Ann@X.com ", "phone": "+33 6 12 34 56 78", "updated_at":
                      dt.datetime(2024, 3, 1)}],
    "loyalty_members": [{"loyalty_id": "L1", "email": "ann@x.com", "_batch_date": D2}],
    "web_events": [{"event_id": "w1", "event_type": "page_view", "ecid": "E1", "crm_id": "C1"}],
}


def test_record_identities_are_raw_primary_first(spark: SparkSession, ws: Workspace) -> None:
    df = dataset_df(spark, ws, "crm_profiles", [
        {"crm_id": " C1 ", "email": "Ann@X.com ", "phone": "+33 (6) 12-34"},
        {"crm_id": "C2", "email": "  ", "phone": None},
    ])
    rows = transform_record_identities(df, ws.schema_of("crm_profiles")).collect()
    # The record key is its file and row: recomputing the frame gives every record the same key again.
    assert [r["record"] for r in rows] == ["crm_profiles/part-0#0", "crm_profiles/part-0#1"]
    assert [[(i["namespace"], i["raw"]) for i in r["identities"]] for r in rows] == [
        [("crm_id", " C1 "), ("email", "Ann@X.com "), ("phone", "+33 (6) 12-34")],
        [("crm_id", "C2"), ("email", "  ")],
    ]


def test_crm_loyalty_and_web_records_resolve_to_one_profile(spark: SparkSession, ws: Workspace) -> None:
    got = resolve_rows(spark, ws, ANN)
    assert sorted(got) == [("crm_id", "C1"), ("ecid", "E1"), ("email", "ann@x.com"), ("loyalty_id", "L1"),
                           ("phone", "+33612345678")]
    # The anchor is the CRM id: the namespace of the highest priority.
    assert {r["profile_id"] for r in got.values()} == {pid("crm_id", "C1")}
    assert pid("crm_id", "C1") == "c404837368ec4d626f6e"
    assert (got[("email", "ann@x.com")]["first_seen"], got[("email", "ann@x.com")]["last_seen"]) == (D1, D2)
    assert (got[("loyalty_id", "L1")]["first_seen"], got[("loyalty_id", "L1")]["last_seen"]) == (D2, D2)
    assert all(r["run_date"] == D3 for r in got.values())
    node = spark.range(1).select(F.xxhash64(F.lit("crm_id"), F.lit("C1")).alias("n")).first()
    assert node is not None and got[("crm_id", "C1")]["node_id"] == node["n"]


def test_unrelated_records_stay_apart(spark: SparkSession, ws: Workspace) -> None:
    got = resolve_rows(spark, ws, {
        **ANN,
        "email_events": [{"event_id": "m1", "event_type": "open", "email": "bob@y.com"},
                         {"event_id": "m2", "event_type": "open", "email": "BOB@y.com"}],
        "loyalty_members": [{"loyalty_id": "L1", "email": "ann@x.com"}, {"loyalty_id": "L2"}],
    })
    assert got[("email", "bob@y.com")]["profile_id"] == pid("email", "bob@y.com")
    assert got[("loyalty_id", "L2")]["profile_id"] == pid("loyalty_id", "L2")
    assert got[("ecid", "E1")]["profile_id"] == pid("crm_id", "C1")
    assert len({r["profile_id"] for r in got.values()}) == 3


def test_links_one_star_per_record_without_duplicates(spark: SparkSession, ws: Workspace) -> None:
    records = records_of(spark, ws, {"crm_profiles": [
        {"crm_id": "C1", "email": "a@x.com", "phone": "06 12 34 56 78", "_batch_date": D1},
        {"crm_id": "C1", "email": "A@X.COM", "_batch_date": D2},  # the same link again, seen later
        {"crm_id": "C2", "phone": "123"},  # no link: 123 is not a phone number
    ]})
    out = resolve(records, ws.namespaces, 50, None, D3)
    links = {(r["seen_date"]) for r in out["links"].collect()}
    assert out["links"].count() == 2 and links == {D1, D2}


def test_anchor_priority_then_namespace_then_smallest_value(spark: SparkSession) -> None:
    members = spark.createDataFrame([
        (1, "email", "b@x.com"), (1, "email", "a@x.com"), (1, "ecid", "E9"),
        (2, "zeta", "z"), (2, "alpha", "y"), (2, "alpha", "x"),
        (3, "ecid", "E1"), (3, "unknown", "u"),
    ], "component long, namespace string, value string")
    got = {r["component"]: r["profile_id"] for r in
           transform_anchor_profile_ids(members, {"email": 50, "ecid": 10, "zeta": 5, "alpha": 5}).collect()}
    assert got == {1: pid("email", "a@x.com"), 2: pid("alpha", "x"), 3: pid("ecid", "E1")}


def test_hash_collision_is_a_clear_error(spark: SparkSession) -> None:
    identities = spark.createDataFrame([("email", "a@x.com", 42), ("ecid", "E1", 42), ("ecid", "E2", 7)],
                                       "namespace string, value string, node_id long")
    with pytest.raises(IdentityCollisionError, match="3 distinct identities hash to only 2 node ids"):
        check_no_hash_collisions(identities)


def write_dataset(spark: SparkSession, ws: Workspace, lake: str, dataset: str, records: list[dict[str, Any]]) -> None:
    df = dataset_df(spark, ws, dataset, records)
    df.write.format("delta").save(Lake(lake).path(DATASET, dataset))
    # Profile datasets read as of a past run date are rebuilt from the staging history.
    df.write.format("delta").save(Lake(lake).path(STAGING, dataset))


def test_run_writes_the_identity_map_and_ignores_later_batches(spark: SparkSession, ws: Workspace,
                                                              lake: str) -> None:
    write_dataset(spark, ws, lake, "crm_profiles", [{"crm_id": "C1", "email": "ann@x.com", "_batch_date": D1},
                                                    {"crm_id": "C2", "email": "ann@x.com", "_batch_date": D3}])
    write_dataset(spark, ws, lake, "web_events", [{"event_id": "w1", "event_type": "page_view", "ecid": "E1",
                                                   "crm_id": "C1", "_batch_date": D2}])
    # email_events and loyalty_members have no table yet: they read as empty.
    ctx = RunContext(D2, "test", Settings(workspace=str(ws.root), lake=lake, landing=lake, exports=lake))
    metrics = run(spark, ws, ctx)
    assert metrics == {"identities": 3, "links": 2, "recomputed_identities": 3, "profiles": 1,
                       "max_identities_per_profile": 3,
                       "links_dropped": 0, "identities_dropped": 0, "profile_merges": 0, "profile_splits": 0}

    table = read_table(spark, Lake(lake).path(IDENTITY_MAP))
    assert table.schema == IDENTITY_MAP.schema
    rows = {tuple(r)[:2] + tuple(r)[4:7] for r in table.collect()}
    c1 = pid("crm_id", "C1")
    # C1 was seen on the CRM record (D1) and on the web event (D2); C2 (D3) is not seen yet.
    assert rows == {(D2, "crm_id", c1, D1, D2), (D2, "email", c1, D1, D1), (D2, "ecid", c1, D2, D2)}

    # The next day sees C2, which shares the email. crm_id is unique: the newer link (C2, D3) wins the
    # email and the older one (C1) is dropped and audited. C1 keeps its profile id (its oldest identity,
    # crm_id C1, stays with it); the email leaves it for C2's new profile: a split. D2 is untouched.
    metrics = run(spark, ws, RunContext(D3, "test", ctx.settings))
    # Incremental: the component of C1 is touched (the e-mail was seen again, C2 is new): all 4 recomputed.
    assert metrics == {"identities": 4, "links": 3, "recomputed_identities": 4, "profiles": 2,
                       "max_identities_per_profile": 2,
                       "links_dropped": 1, "identities_dropped": 0, "profile_merges": 0, "profile_splits": 1}
    assert table.where(F.col("run_date") == D2).count() == 3
    c2 = pid("crm_id", "C2")
    assert {(r["namespace"], r["value"], r["profile_id"]) for r in table.where(F.col("run_date") == D3).collect()} \
        == {("crm_id", "C1", c1), ("ecid", "E1", c1), ("crm_id", "C2", c2), ("email", "ann@x.com", c2)}
    audit = read_table(spark, Lake(lake).path(IDENTITY_AUDIT)).collect()
    assert [(r["run_date"], r["reason"], r["namespace"], r["value"], r["other_namespace"], r["other_value"],
             r["seen_date"], r["detail"]) for r in audit] == [
        (D3, "unique_namespace", "crm_id", "C1", "email", "ann@x.com", D1,
         "would put crm_id 'C1' and 'C2' in one person; a newer link kept them apart")]
    changes = read_table(spark, Lake(lake).path(PROFILE_ID_CHANGES)).collect()
    assert [tuple(r) for r in changes] == [(D3, "split", c2, c1, D2, 1)]
