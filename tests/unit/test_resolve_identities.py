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

D1, D2, D3, D4, D5 = (dt.date(2024, 3, d) for d in range(1, 6))


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
    check_no_hash_collisions(out["nodes"])
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
    # The record key is its batch, file and row: recomputing the frame gives every record the same key again.
    assert [r["record"] for r in rows] == ["2024-03-01#crm_profiles/part-0#0", "2024-03-01#crm_profiles/part-0#1"]
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


def write_dataset(spark: SparkSession, ws: Workspace, lake: str, dataset: str, records: list[dict[str, Any]],
                  newest: list[dict[str, Any]] | None = None) -> None:
    """The staging history holds every record version; the dataset table ``newest`` (default: the same)."""
    df = dataset_df(spark, ws, dataset, records)
    df.write.format("delta").save(Lake(lake).path(STAGING, dataset))
    table = df if newest is None else dataset_df(spark, ws, dataset, newest)
    table.write.format("delta").save(Lake(lake).path(DATASET, dataset))


def test_run_writes_the_identity_map_and_ignores_later_batches(spark: SparkSession, ws: Workspace,
                                                              lake: str) -> None:
    write_dataset(spark, ws, lake, "crm_profiles", [{"crm_id": "C1", "email": "ann@x.com", "_batch_date": D1},
                                                    {"crm_id": "C2", "email": "ann@x.com", "_batch_date": D3}])
    write_dataset(spark, ws, lake, "web_events", [{"event_id": "w1", "event_type": "page_view", "ecid": "E1",
                                                   "crm_id": "C1", "_batch_date": D2}])
    # email_events and loyalty_members have no table yet: they read as empty.
    ctx = RunContext(D2, "test", Settings(workspace=str(ws.root), lake=lake, landing=lake, exports=lake))
    metrics = run(spark, ws, ctx)
    assert metrics == {"records_read": 2, "identities": 3, "links": 2, "recomputed_identities": 3, "profiles": 1,
                       "max_identities_per_profile": 3, "links_dropped": 0, "identities_dropped": 0,
                       "links_expired": 0, "profile_merges": 0, "profile_splits": 0}

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
    # Incremental: only D3's batch is read (one record); the component of C1 is touched (the e-mail was seen
    # again, C2 is new): all 4 recomputed.
    assert metrics == {"records_read": 1, "identities": 4, "links": 3, "recomputed_identities": 4, "profiles": 2,
                       "max_identities_per_profile": 2, "links_dropped": 1, "identities_dropped": 0,
                       "links_expired": 0, "profile_merges": 0, "profile_splits": 1}
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


# ---------------------------------------------------------------- a cumulative graph


def node(spark: SparkSession, namespace: str, value: str) -> int:
    row = spark.range(1).select(F.xxhash64(F.lit(namespace), F.lit(value)).alias("n")).first()
    assert row is not None
    return int(row["n"])


def named_links(out: dict[str, DataFrame]) -> dict[frozenset[tuple[str, str]], tuple[Any, Any]]:
    """{the link's two identities: (seen_date, expires_on)} of the graph of the run date."""
    names = {r["node_id"]: (r["namespace"], r["value"]) for r in out["nodes"].collect()}
    return {frozenset({names[r["src"]], names[r["dst"]]}): (r["seen_date"], r["expires_on"])
            for r in out["links"].collect()}


def test_a_link_stays_when_a_later_record_version_drops_the_identity(spark: SparkSession, ws: Workspace) -> None:
    # C1 first arrives with an e-mail, then a new version carries only a phone; the loyalty member who
    # used the e-mail still finds C1.
    records = records_of(spark, ws, {
        "crm_profiles": [{"crm_id": "C1", "email": "ann@x.com", "_batch_date": D1},
                         {"crm_id": "C1", "phone": "+33 6 12 34 56 78", "_batch_date": D2,
                          "_record_ts": dt.datetime(2024, 3, 2, 9)}],
        "loyalty_members": [{"loyalty_id": "L1", "email": "Ann@x.com", "_batch_date": D1}],
    })
    out = resolve(records, ws.namespaces, 50, None, D2)
    got = {(r["namespace"], r["value"]): (r["profile_id"], r["first_seen"], r["last_seen"])
           for r in out["identity_map"].collect()}
    c1 = pid("crm_id", "C1")
    assert got == {("crm_id", "C1"): (c1, D1, D2), ("email", "ann@x.com"): (c1, D1, D1),
                   ("phone", "+33612345678"): (c1, D2, D2), ("loyalty_id", "L1"): (c1, D1, D1)}
    assert named_links(out) == {frozenset({("crm_id", "C1"), ("email", "ann@x.com")}): (D1, None),
                                frozenset({("crm_id", "C1"), ("phone", "+33612345678")}): (D2, None),
                                frozenset({("loyalty_id", "L1"), ("email", "ann@x.com")}): (D1, None)}
    nodes = {(r["namespace"], r["value"]): r["last_seen_ts"] for r in out["nodes"].collect()}
    assert nodes[("crm_id", "C1")] == dt.datetime(2024, 3, 2, 9)


def test_first_seen_is_the_first_batch_not_the_newest_record(spark: SparkSession, ws: Workspace, lake: str) -> None:
    # The dataset table keeps only the newest version (D3); the staging history keeps both.
    versions = [{"crm_id": "C1", "email": "ann@x.com", "_batch_date": D1},
                {"crm_id": "C1", "phone": "+33 6 12 34 56 78", "_batch_date": D3}]
    write_dataset(spark, ws, lake, "crm_profiles", versions, newest=versions[1:])
    write_dataset(spark, ws, lake, "loyalty_members", [{"loyalty_id": "L1", "email": "ann@x.com",
                                                        "_batch_date": D2}])
    settings = Settings(workspace=str(ws.root), lake=lake, landing=lake, exports=lake)
    assert run(spark, ws, RunContext(D1, "test", settings))["records_read"] == 1
    metrics = run(spark, ws, RunContext(D3, "test", settings))
    # Incremental from D1: only the batches of D2 and D3 are read.
    assert (metrics["records_read"], metrics["identities"], metrics["links"], metrics["profiles"]) == (2, 4, 3, 1)
    table = read_table(spark, Lake(lake).path(IDENTITY_MAP)).where(F.col("run_date") == D3)
    c1 = pid("crm_id", "C1")
    assert {(r["namespace"], r["value"], r["profile_id"], r["first_seen"], r["last_seen"]) for r in table.collect()} \
        == {("crm_id", "C1", c1, D1, D3), ("email", "ann@x.com", c1, D1, D2), ("phone", "+33612345678", c1, D3, D3),
            ("loyalty_id", "L1", c1, D2, D2)}


def test_links_expire_after_the_shorter_ttl_and_are_audited(spark: SparkSession, ws: Workspace) -> None:
    namespaces = {code: ns.model_copy(update={"link_ttl_days": {"crm_id": 5, "email": 2}.get(code)})
                  for code, ns in ws.namespaces.items()}
    records = records_of(spark, ws, {
        "crm_profiles": [{"crm_id": "C1", "email": "a@x.com", "_batch_date": D1},  # TTL min(5, 2): gone on D3
                         {"crm_id": "C3", "email": "c3@x.com", "_batch_date": D1},
                         {"crm_id": "C3", "email": "c3@x.com", "_batch_date": D3}],  # seen again: kept to D5
        # ecid has no TTL of its own: the workspace's 3 days; crm_id 5: gone on D4
        "web_events": [{"event_id": "w1", "event_type": "page_view", "ecid": "E1", "crm_id": "C1",
                        "_batch_date": D1, "_record_ts": dt.datetime(2024, 3, 1, 10)}],
    })
    out = resolve(records, namespaces, 50, None, D4, previous_date=D2, link_ttl_days=3)
    assert named_links(out) == {frozenset({("crm_id", "C3"), ("email", "c3@x.com")}): (D3, D5)}
    profiles = {(r["namespace"], r["value"]): r["profile_id"] for r in out["identity_map"].collect()}
    assert profiles == {("crm_id", "C1"): pid("crm_id", "C1"), ("email", "a@x.com"): pid("email", "a@x.com"),
                        ("ecid", "E1"): pid("ecid", "E1"), ("crm_id", "C3"): pid("crm_id", "C3"),
                        ("email", "c3@x.com"): pid("crm_id", "C3")}

    def row(a: tuple[str, str], b: tuple[str, str], days: int, ts: dt.datetime) -> tuple[Any, ...]:
        # The audit names the link's src end first (the smaller node id); the component is src's own.
        (ns, value), (other_ns, other_value) = sorted([a, b], key=lambda i: node(spark, *i))
        return (D4, node(spark, ns, value), "link_expired", ns, value, other_ns, other_value, D1, ts,
                f"not seen again within {days} days of 2024-03-01 (link_ttl_days)")
    assert sorted(tuple(r) for r in out["audit"].collect()) == sorted([
        row(("crm_id", "C1"), ("email", "a@x.com"), 2, dt.datetime(2024, 3, 1, 12)),
        row(("ecid", "E1"), ("crm_id", "C1"), 3, dt.datetime(2024, 3, 1, 10))])
    # Expiries are reported by the run that drops the link: the C1 - e-mail link was already gone on D3.
    later = resolve(records, namespaces, 50, None, D4, previous_date=D3, link_ttl_days=3)
    assert [(r["namespace"], r["other_namespace"]) for r in later["audit"].collect()] == [
        tuple(n for n, _ in sorted([("ecid", "E1"), ("crm_id", "C1")], key=lambda i: node(spark, *i)))]


def test_identity_cap_evicts_cookies_seen_longest_ago_whatever_their_values(spark: SparkSession,
                                                                            ws: Workspace) -> None:
    # Value order (E-a < E-m < E-z) contradicts age (E-z oldest); the e-mail is older than every cookie but
    # cookies go first.
    def visit(event: str, ecid: str, day: dt.date) -> dict[str, Any]:
        return {"event_id": event, "event_type": "page_view", "ecid": ecid, "crm_id": "C1", "_batch_date": day,
                "_record_ts": dt.datetime.combine(day, dt.time(10))}
    records = records_of(spark, ws, {
        "crm_profiles": [{"crm_id": "C1", "email": "old@x.com", "_batch_date": D1}],
        "web_events": [visit("w1", "E-a", D3), visit("w2", "E-m", D2), visit("w3", "E-z", D1)],
    })
    out = resolve(records, ws.namespaces, 3, None, D3)
    profiles = {(r["namespace"], r["value"]): r["profile_id"] for r in out["identity_map"].collect()}
    c1 = pid("crm_id", "C1")
    assert profiles == {("crm_id", "C1"): c1, ("email", "old@x.com"): c1, ("ecid", "E-a"): c1,
                        ("ecid", "E-m"): pid("ecid", "E-m"), ("ecid", "E-z"): pid("ecid", "E-z")}
    assert sorted((r["reason"], r["value"], r["seen_date"]) for r in out["audit"].collect()) == [
        ("identity_cap", "E-m", D2), ("identity_cap", "E-z", D1)]
