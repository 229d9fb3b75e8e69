"""Governance at run time, for file destinations: consent exclusions (exact rows and metrics row), and a usage
policy changed after validation that stops the export before anything is read, rendered or sent."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from cdp.errors import PolicyViolationError, WorkspaceError
from cdp.lake import AUDIENCE_MEMBERSHIP, DESTINATION_METRICS, PROFILES, Lake
from cdp.run_context import RunContext
from cdp.schemas import spark_type
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from cdp.workspace.models import UsagePolicy
from jobs import check_quality, export

D = dt.date(2026, 11, 27)
QUALIFIED = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
HEADER = "crm_id,email,first_name,loyalty_tier,country,membership_status,last_qualification_time\n"
# profile -> (crm id, e-mail, first name, tier, country, consent_marketing)
PEOPLE: dict[str, tuple[str | None, str | None, str, str, str, bool | None]] = {
    "p1": ("C1", "ann@example.com", "Ann", "gold", "FR", True),
    "p2": ("C2", "bob@example.com", "Bob", "platinum", "DE", False),  # said no
    "p3": ("C3", "cy@example.com", "Cy", "gold", "US", None),  # never asked: no consent either
    "p4": (None, None, "Dee", "gold", "FR", True),  # consented, but nothing identifies her
    "p5": (None, None, "Eve", "gold", "FR", None),  # neither: consent is the reason counted
}


def write_lake(spark: SparkSession, ws: Workspace, lake: Lake) -> None:
    """The run date's profiles and gold_members memberships, as build_profiles and evaluate_audiences leave them."""
    attributes = ws.profile_attributes()
    schema = T.StructType([
        T.StructField("run_date", T.DateType()), T.StructField("profile_id", T.StringType()),
        T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
        T.StructField("identity_count", T.IntegerType()),
        *[T.StructField(name, spark_type(spec)) for name, spec in attributes.items()]])
    rows = []
    for pid, (crm, email, first, tier, country, consent) in PEOPLE.items():
        ids = {k: [v] for k, v in (("crm_id", crm), ("email", email)) if v}
        values: dict[str, Any] = {"crm_id": crm, "email": email, "first_name": first, "tier": tier,
                                  "country": country, "consent_marketing": consent}
        rows.append((D, pid, ids, len(ids), *[values.get(a) for a in attributes]))
    spark.createDataFrame(rows, schema).write.format("delta").partitionBy("run_date").save(lake.path(PROFILES))
    members = [(D, "gold_members", pid, "realized", QUALIFIED, D, None, None) for pid in PEOPLE]
    spark.createDataFrame(members, AUDIENCE_MEMBERSHIP.schema).write.format("delta").partitionBy("run_date").save(
        lake.path(AUDIENCE_MEMBERSHIP))


@pytest.fixture()
def setup(spark: SparkSession, lake: str, tmp_path: Path, repo_root: Path) -> tuple[Path, Workspace, RunContext]:
    root = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", root)
    dest = root / "destinations" / "marketing_landing.yaml"
    dest.write_text(dest.read_text() + "consent: [marketing.direct_mail]\n")
    ws = load_workspace(root)
    ctx = RunContext(D, "scheduled__2026-11-27", Settings(workspace=str(root), lake=lake,
                                                           landing=str(tmp_path / "landing"),
                                                           exports=str(tmp_path / "exports")))
    write_lake(spark, ws, ctx.lake)
    return root, ws, ctx


def test_profiles_without_consent_are_excluded_and_counted(spark: SparkSession,
                                                           setup: tuple[Path, Workspace, RunContext]) -> None:
    _, ws, ctx = setup
    exported = export.run(spark, ws, ctx, "marketing_landing")
    folder = Path(ctx.settings.exports) / "marketing"
    assert (folder / "marketing_landing_gold_members_20261127.csv").read_text(encoding="utf-8") == (
        HEADER + "C1,ann@example.com,Ann,gold,FR,realized,2026-11-28T00:00:00Z\n")
    assert exported["received"] == 5 and exported["activated"] == 1
    assert {k: v for k, v in exported.items() if k.startswith("excluded.")} == {
        "excluded.consent": 3, "excluded.no_identity": 1, "excluded.missing_mandatory": 0,
        "excluded.deduplicated": 0}
    row = spark.read.format("delta").load(ctx.lake.path(DESTINATION_METRICS)).collect()
    assert [(r["destination"], r["received"], r["activated"], r["excluded"], r["failed"], r["rows"], r["status"])
            for r in row] == [("marketing_landing", 5, 1, {"consent": 3, "no_identity": 1, "missing_mandatory": 0,
                                                           "deduplicated": 0}, 0, 1, "delivered")]
    # The export gate reconciles: received = activated + excluded + failed, and the files hold the activated rows.
    check_quality.run(spark, ws, ctx, "exports")


def test_a_policy_changed_after_validation_stops_the_export(spark: SparkSession,
                                                             setup: tuple[Path, Workspace, RunContext]) -> None:
    root, ws, ctx = setup
    # What the export task sees once someone adds a policy after cdp validate passed: e-mails (I1) may no longer
    # be used for e-mail targeting, which marketing_landing declares.
    line = ("destinations/marketing_landing.yaml: mapping.1: destination marketing_landing (action email_targeting) "
            "exports attribute email from crm_profiles.email, labelled I1 and forbidden by policy no_pii_mail")
    gov = ws.config.governance.model_copy(update={"policies": {
        **ws.config.governance.policies, "no_pii_mail": UsagePolicy(labels=["I1"], actions=["email_targeting"])}})
    changed = dataclasses.replace(ws, config=ws.config.model_copy(update={"governance": gov}))
    with pytest.raises(PolicyViolationError) as caught:
        export.run(spark, changed, ctx, "marketing_landing")
    other = line.replace("crm_profiles.email", "loyalty_members.email")
    first = line.replace("mapping.1", "mapping.2").replace("attribute email from crm_profiles.email",
                                                          "attribute first_name from crm_profiles.first_name")
    assert str(caught.value) == (
        "destination marketing_landing is blocked by the workspace's usage policies, nothing was sent (3 "
        f"violation(s)):\n  - {line}\n  - {other}\n  - {first}\nRemove the field or audience from the destination, "
        "change its marketing_actions, or change the policy; then run cdp validate and re-run the task")
    # Nothing rendered or sent; the run is recorded as blocked, its five members excluded for reason policy.
    assert not (Path(ctx.settings.exports) / "marketing").exists()
    rows = spark.read.format("delta").load(ctx.lake.path(DESTINATION_METRICS)).collect()
    assert [(r["destination"], r["run_date"], r["mode"], r["received"], r["activated"], r["excluded"], r["failed"],
             r["files"], r["rows"], r["bytes"], r["status"], r["error"]) for r in rows] == [
        ("marketing_landing", D, "blocked", 5, 0, {"policy": 5}, 0, 0, 0, 0, "blocked", str(caught.value))]

    # The same change made in the files: the job's own load of the workspace refuses it with the same line.
    ws_file = root / "workspace.yaml"
    ws_file.write_text(ws_file.read_text().replace(
        "  consent_purposes:", "    no_pii_mail: {labels: [I1], actions: [email_targeting]}\n  consent_purposes:"))
    with pytest.raises(WorkspaceError) as loaded:
        load_workspace(root)
    assert line in [str(p) for p in loaded.value.problems]
