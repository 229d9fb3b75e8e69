"""Profile merge: attributes merged one by one, by time or by dataset precedence; nulls never win."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from cdp.lake import IDENTITY_MAP
from cdp.schemas import dataset_struct
from cdp.workspace.loader import Workspace, load_workspace
from jobs.build_profiles import (
    FRAGMENT_KEYS,
    fragments_struct,
    precedence_ranks,
    profiles_struct,
    transform_event_counts,
    transform_fragments,
    transform_merge_attributes,
    transform_profile_identities,
    transform_profiles,
)

RUN = dt.date(2024, 3, 3)
D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


@pytest.fixture(scope="module")
def ws(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


def ts(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2024, 3, day, hour)


def dataset_df(spark: SparkSession, ws: Workspace, dataset: str, records: list[dict[str, Any]]) -> DataFrame:
    struct = dataset_struct(ws.schema_of(dataset))
    rows = []
    for i, record in enumerate(records):
        full = {"_source_file": f"{dataset}/part-0", "_row_number": i, "_batch_date": D1, "_record_ts": ts(1),
                **record}
        rows.append(tuple(full.get(f.name) for f in struct.fields))
    return spark.createDataFrame(rows, struct)


def identity_map_df(spark: SparkSession, rows: list[tuple[str, str, str]]) -> DataFrame:
    """Identity map rows from (namespace, value, profile_id)."""
    return spark.createDataFrame(
        [(RUN, ns, value, i, profile, D1, D1, i) for i, (ns, value, profile) in enumerate(rows)], IDENTITY_MAP.schema)


IDENTITIES = [("crm_id", "C1", "P1"), ("crm_id", "C2", "P1"), ("email", "ann@x.com", "P1"), ("loyalty_id", "L1", "P1"),
              ("ecid", "E9", "P2"), ("ecid", "E1", "P1")]

CRM = [
    {"crm_id": " C1 ", "email": "Ann@X.com ", "first_name": "Ann", "city": "Paris", "country": "FR",
     "updated_at": ts(1, 10), "_record_ts": ts(1, 10)},
    {"crm_id": "C2", "city": "Lyon", "updated_at": ts(2, 10), "_record_ts": ts(2, 10), "_batch_date": D2},
    {"crm_id": "C404", "city": "Nowhere"},  # not in the identity map: dropped
]
LOYALTY = [{"loyalty_id": "L1", "email": "ann@x.com", "tier": "gold", "points": 120, "updated_at": ts(1, 8),
            "_record_ts": ts(1, 8)}]


def fragments(spark: SparkSession, ws: Workspace, data: dict[str, list[dict[str, Any]]]) -> DataFrame:
    identity_map = identity_map_df(spark, IDENTITIES)
    attributes = ws.profile_attributes()
    out = spark.createDataFrame([], fragments_struct(attributes))
    for name, records in data.items():
        schema = ws.schema_of(name)
        primary = schema.primary_identity
        assert primary is not None and primary.identity is not None
        out = out.unionByName(transform_fragments(dataset_df(spark, ws, name, records), name, schema,
                                                  ws.namespaces[primary.identity.namespace].type, identity_map,
                                                  attributes))
    return out


def merged(spark: SparkSession, ws: Workspace, data: dict[str, list[dict[str, Any]]],
           ranks: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    rows = transform_merge_attributes(fragments(spark, ws, data), list(ws.profile_attributes()), ranks).collect()
    return {r["profile_id"]: r.asDict() for r in rows}


def test_fragments_attach_records_to_profiles(spark: SparkSession, ws: Workspace) -> None:
    df = fragments(spark, ws, {"crm_profiles": CRM})
    assert df.columns == [*FRAGMENT_KEYS, *ws.profile_attributes()]
    rows = sorted((r["profile_id"], r["_dataset"], r["crm_id"], r["city"], r["tier"]) for r in df.collect())
    # The primary identity is normalised for the join; the attribute keeps the declared value.
    assert rows == [("P1", "crm_profiles", " C1 ", "Paris", None), ("P1", "crm_profiles", "C2", "Lyon", None)]


def test_timestamp_order_merges_attribute_by_attribute(spark: SparkSession, ws: Workspace) -> None:
    got = merged(spark, ws, {"crm_profiles": CRM, "loyalty_members": LOYALTY})
    assert got == {"P1": {
        "profile_id": "P1",
        "crm_id": "C2",  # the newest record
        "email": "Ann@X.com ",  # C1 is newer than the loyalty record; C2 has none
        "phone": None,
        "first_name": "Ann",  # only C1 has it: the newer C2's null does not overwrite it
        "last_name": None,
        "birth_date": None,
        "country": "FR",
        "city": "Lyon",  # the newer CRM city
        "consent_marketing": None,
        "updated_at": ts(2, 10),
        "loyalty_id": "L1",
        "tier": "gold",  # only in the older loyalty record: survives
        "points": 120,
        "joined_on": None,
    }}


def test_timestamp_ties_are_broken_by_batch_file_and_row(spark: SparkSession, ws: Workspace) -> None:
    same = ts(1)
    got = merged(spark, ws, {"crm_profiles": [
        {"crm_id": "C1", "city": "A", "_record_ts": same, "_source_file": "b", "_row_number": 1},
        {"crm_id": "C2", "city": "B", "_record_ts": same, "_source_file": "b", "_row_number": 2},
        {"crm_id": "C1", "country": "X", "_record_ts": same, "_source_file": "a", "_row_number": 9,
         "_batch_date": D2},
        {"crm_id": "C2", "country": "Y", "_record_ts": same, "_source_file": "z", "_row_number": 9},
    ]})
    assert (got["P1"]["city"], got["P1"]["country"]) == ("B", "X")


def test_dataset_precedence(spark: SparkSession, ws: Workspace) -> None:
    ranks = precedence_ranks(["loyalty_members"], ["crm_profiles", "loyalty_members"])
    assert ranks == {"loyalty_members": 0, "crm_profiles": 1}
    got = merged(spark, ws, {"crm_profiles": CRM, "loyalty_members": LOYALTY}, ranks)["P1"]
    # The loyalty values win although older; the CRM fills what loyalty lacks, newest first.
    assert (got["email"], got["updated_at"], got["tier"]) == ("ann@x.com", ts(1, 8), "gold")
    assert (got["crm_id"], got["city"], got["country"], got["first_name"]) == ("C2", "Lyon", "FR", "Ann")


def test_precedence_ranks_unlisted_datasets_after_by_name() -> None:
    assert precedence_ranks(["b"], ["c", "a", "b"]) == {"b": 0, "a": 1, "c": 2}
    assert precedence_ranks([], ["c", "a"]) == {"a": 0, "c": 1}


def test_every_profile_gets_a_row_with_sorted_identities(spark: SparkSession, ws: Workspace) -> None:
    attributes = ws.profile_attributes()
    identity_map = identity_map_df(spark, IDENTITIES)
    merge = transform_merge_attributes(fragments(spark, ws, {"crm_profiles": CRM, "loyalty_members": LOYALTY}),
                                       list(attributes), datasets=["crm_profiles", "loyalty_members", "other"])
    # Events of the evaluation window, per profile (P9 has no identity in the map: not a profile).
    counts = transform_event_counts(spark.createDataFrame([("P1",), ("P1",), ("P9",)], "profile_id string"))
    profiles = transform_profiles(transform_profile_identities(identity_map), merge, attributes, RUN, counts)
    assert profiles.columns == profiles_struct(attributes).names
    for column in ("identities", "dataset_last_update", "events_in_window"):
        assert profiles.schema[column].dataType == profiles_struct(attributes)[column].dataType
    rows = {r["profile_id"]: r.asDict() for r in profiles.collect()}
    assert sorted(rows) == ["P1", "P2"]
    p1, p2 = rows["P1"], rows["P2"]
    assert p1["identities"] == {"crm_id": ["C1", "C2"], "ecid": ["E1"], "email": ["ann@x.com"], "loyalty_id": ["L1"]}
    assert (p1["run_date"], p1["identity_count"], p1["city"], p1["tier"]) == (RUN, 5, "Lyon", "gold")
    # The newest record time per dataset the profile has records in; no entry for a dataset without one.
    assert p1["dataset_last_update"] == {"crm_profiles": ts(2, 10), "loyalty_members": ts(1, 8)}
    assert p1["events_in_window"] == 2
    # A profile seen only through a cookie: identities, no attributes, no record, no event.
    assert p2 == {"run_date": RUN, "profile_id": "P2", "identities": {"ecid": ["E9"]}, "identity_count": 1,
                  "dataset_last_update": {}, "events_in_window": 0, **dict.fromkeys(attributes)}


def test_no_profile_dataset_means_no_attribute(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], fragments_struct({}))
    assert transform_merge_attributes(empty, []).columns == ["profile_id"]
