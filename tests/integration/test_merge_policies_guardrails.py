"""Named merge policies with a per-audience override, and the segmentation guardrails, over two run dates.

build_profiles then evaluate_audiences on a tiny lake of the example workspace's datasets: the
identity map is written directly (so a profile can exceed the identity cap), the caps are tiny.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import read_table
from cdp.lake import AUDIENCE_MEMBERSHIP, DATASET, IDENTITY_MAP, PROFILES, Lake
from cdp.run_context import RunContext
from cdp.schemas import dataset_struct
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import build_profiles, evaluate_audiences

D0, D1 = dt.date(2024, 2, 29), dt.date(2024, 3, 1)
LOADED = dt.date(2024, 2, 28)  # every profile record landed then


def t(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2024, 2, day, hour) if day > 1 else dt.datetime(2024, 3, 1, hour)


PROFILE_RECORDS: dict[str, list[dict[str, Any]]] = {
    "crm_profiles": [
        {"crm_id": "C1", "email": "ann@crm.com", "updated_at": t(1, 9)},  # newer than ann's loyalty record
        {"crm_id": "C2", "email": "bob@old.com", "updated_at": t(27)},
        {"crm_id": "C3", "email": "cat@crm.com", "updated_at": t(27)},
        {"crm_id": "C4", "email": "dan@crm.com", "updated_at": t(26)},
        {"crm_id": "C5", "email": "eve@shop.com", "updated_at": t(1, 8)},
    ],
    "loyalty_members": [
        {"loyalty_id": "L1", "email": "ann@shop.com", "updated_at": t(28)},
        {"loyalty_id": "L2", "email": "bob@crm.com", "updated_at": t(28)},
        {"loyalty_id": "L4", "tier": "gold", "updated_at": t(28)},  # no email: the CRM one stays
        {"loyalty_id": "L5", "email": "eve@crm.com", "updated_at": t(28)},
    ],
}
IDENTITIES = {
    "p_ann": [("crm_id", "C1"), ("loyalty_id", "L1")],
    "p_bob": [("crm_id", "C2"), ("loyalty_id", "L2"), ("ecid", "E2a"), ("ecid", "E2b")],  # 4 > cap of 3
    "p_cat": [("crm_id", "C3"), ("ecid", "E3")],
    "p_dan": [("crm_id", "C4"), ("loyalty_id", "L4"), ("ecid", "E4")],  # 3: at the cap, kept
    "p_eve": [("crm_id", "C5"), ("loyalty_id", "L5")],
}
# (ecid, event day): cat has 4 page views in the 7-day window on D1 (over the cap of 3), dan 3 (at the cap).
EVENTS = [("E3", t(27)), ("E3", t(28)), ("E3", t(29)), ("E3", t(1)), ("E3", dt.datetime(2024, 2, 1)),
          ("E4", t(25)), ("E4", t(26)), ("E4", t(27))]

AUDIENCES = {
    "crm_email_newest": {"rule": {"attribute": "email", "op": "ends_with", "value": "@crm.com"}},
    "crm_email_loyalty_first": {"merge_policy": "loyalty_first",
                                "rule": {"attribute": "email", "op": "ends_with", "value": "@crm.com"}},
    # Its own attributes by loyalty_first; the audiences it names keep their own policy.
    "both_policies": {"merge_policy": "loyalty_first",
                      "rule": {"all": [{"audience": "crm_email_newest"}, {"audience": "crm_email_loyalty_first"}]}},
    "browsers": {"rule": {"events": {"type": "page_view", "at_least": 1, "within": {"last_days": 7}}}},
}


def workspace(repo_root: Path, root: Path, caps: str) -> Workspace:
    """The example workspace with named merge policies, the audiences above and ``caps`` as extra guardrails."""
    shutil.copytree(repo_root / "examples" / "retail", root)
    shutil.rmtree(root / "audiences")
    shutil.rmtree(root / "destinations")
    (root / "audiences").mkdir()
    for audience_id, spec in AUDIENCES.items():
        text = yaml.safe_dump({"id": audience_id, "name": audience_id, **spec})
        (root / "audiences" / f"{audience_id}.yaml").write_text(text)
    config = root / "workspace.yaml"
    config.write_text(config.read_text().replace("merge_policy: timestamp_ordered\n", (
        "merge_policies:\n"
        "  newest: {type: timestamp_ordered}\n"
        "  loyalty_first: {type: dataset_precedence, datasets: [loyalty_members]}\n"
        "default_merge_policy: newest\n")) + caps)
    return load_workspace(root)


def write_lake(spark: SparkSession, ws: Workspace, lake: Lake) -> None:
    for dataset, records in PROFILE_RECORDS.items():
        struct = dataset_struct(ws.schema_of(dataset))
        rows = [tuple({"_source_file": dataset, "_row_number": i, "_batch_date": LOADED,
                       "_record_ts": r["updated_at"], **r}.get(f.name) for f in struct.fields)
                for i, r in enumerate(records)]
        spark.createDataFrame(rows, struct).write.format("delta").save(lake.path(DATASET, dataset))
    struct = dataset_struct(ws.schema_of("web_events"))
    rows = [tuple({"event_id": f"w{i}", "event_type": "page_view", "timestamp": ts, "ecid": ecid,
                   "_source_file": "web", "_row_number": i, "_batch_date": ts.date(), "_record_ts": ts}.get(f.name)
                  for f in struct.fields) for i, (ecid, ts) in enumerate(EVENTS)]
    spark.createDataFrame(rows, struct).write.format("delta").save(lake.path(DATASET, "web_events"))
    identities = [(profile, ns, value) for profile, ids in IDENTITIES.items() for ns, value in ids]
    mapping = [(day, ns, value, node, profile, LOADED, day, node)
               for day in (D0, D1) for node, (profile, ns, value) in enumerate(identities)]
    spark.createDataFrame(mapping, IDENTITY_MAP.schema).write.format("delta").partitionBy("run_date").save(
        lake.path(IDENTITY_MAP))


def members(spark: SparkSession, lake: Lake, day: dt.date) -> dict[str, dict[str, str]]:
    """audience_id -> profile_id -> status on a run date."""
    out: dict[str, dict[str, str]] = {}
    for r in read_table(spark, lake.path(AUDIENCE_MEMBERSHIP)).where(F.col("run_date") == day).collect():
        out.setdefault(r["audience_id"], {})[r["profile_id"]] = r["status"]
    return out


def test_policy_override_and_segmentation_caps(spark: SparkSession, repo_root: Path, tmp_path: Path,
                                               lake: str) -> None:
    uncapped = workspace(repo_root, tmp_path / "uncapped", "")
    capped = workspace(repo_root, tmp_path / "capped", "  max_events_per_profile: 3\n  max_identities_per_graph: 3\n")
    assert capped.config.guardrails.max_events_per_profile == 3
    assert uncapped.config.guardrails.max_events_per_profile == 5000  # the product's default
    where = Lake(lake)
    write_lake(spark, uncapped, where)

    def ctx(ws: Workspace, day: dt.date) -> RunContext:
        return RunContext(day, "test", Settings(workspace=str(ws.root), lake=lake, landing=lake, exports=lake))

    # Day 0 within the default caps: the two policies select different profiles from the same fragments.
    build_profiles.run(spark, uncapped, ctx(uncapped, D0))
    metrics = evaluate_audiences.run(spark, uncapped, ctx(uncapped, D0))
    assert (metrics["excluded.event_cap"], metrics["excluded.identity_cap"]) == (0, 0)
    realized = "realized"
    assert members(spark, where, D0) == {
        "crm_email_newest": dict.fromkeys(["p_ann", "p_bob", "p_cat", "p_dan"], realized),
        "crm_email_loyalty_first": dict.fromkeys(["p_bob", "p_cat", "p_dan", "p_eve"], realized),
        "both_policies": dict.fromkeys(["p_bob", "p_cat", "p_dan"], realized),
        "browsers": dict.fromkeys(["p_cat", "p_dan"], realized),
    }

    # Day 1 with tiny caps: cat (4 events in the window) and bob (4 identities) are left out and exit.
    build_profiles.run(spark, capped, ctx(capped, D1))
    profiles = read_table(spark, where.path(PROFILES)).where(F.col("run_date") == D1)
    assert {r["profile_id"]: (r["events_in_window"], r["identity_count"]) for r in profiles.collect()} == {
        "p_ann": (0, 2), "p_bob": (0, 4), "p_cat": (4, 2), "p_dan": (3, 3), "p_eve": (0, 2)}
    ann = profiles.where(F.col("profile_id") == "p_ann").first()
    assert ann is not None
    # The table is merged by the default policy (newest); each dataset's newest record time is kept.
    assert (ann["email"], ann["dataset_last_update"]) == (
        "ann@crm.com", {"crm_profiles": t(1, 9), "loyalty_members": t(28)})
    assert sorted(tuple(r) for r in evaluate_audiences.transform_exclusions(
        profiles, capped.config.guardrails).collect()) == [("p_bob", False, True), ("p_cat", True, False)]

    metrics = evaluate_audiences.run(spark, capped, ctx(capped, D1))
    assert (metrics["excluded.event_cap"], metrics["excluded.identity_cap"]) == (1, 1)
    assert {k: v for k, v in metrics.items() if k.endswith(".size")} == {
        "crm_email_newest.size": 2, "crm_email_loyalty_first.size": 2, "both_policies.size": 1, "browsers.size": 1}
    exited, existing = "exited", "existing"
    assert members(spark, where, D1) == {
        "crm_email_newest": {"p_ann": existing, "p_dan": existing, "p_bob": exited, "p_cat": exited},
        "crm_email_loyalty_first": {"p_dan": existing, "p_eve": existing, "p_bob": exited, "p_cat": exited},
        "both_policies": {"p_dan": existing, "p_bob": exited, "p_cat": exited},
        "browsers": {"p_dan": existing, "p_cat": exited},
    }
    # A preview honours the audience's merge policy and the caps.
    assert evaluate_audiences.preview(spark, capped, ctx(capped, D1), "crm_email_loyalty_first") == (
        2, ["p_dan", "p_eve"])
    assert evaluate_audiences.preview(spark, uncapped, ctx(uncapped, D1), "crm_email_loyalty_first") == (
        4, ["p_bob", "p_cat", "p_dan", "p_eve"])
