"""evaluate_audiences then export against a small lake for the example workspace: exact files and log."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from export_lake import D, build_lake
from pyspark.sql import SparkSession

from cdp.destinations.rows import evaluation_stamp
from cdp.lake import DESTINATION_METRICS, EXPORT_LEDGER
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.file_names import render_file_name, slugify
from cdp.workspace.loader import Workspace, load_workspace
from jobs import evaluate_audiences, export

HEADER = "crm_id,email,first_name,loyalty_tier,country,membership_status,last_qualification_time\n"


@pytest.fixture()
def setup(spark: SparkSession, lake: str, tmp_path: Path, repo_root: Path) -> tuple[Workspace, RunContext]:
    ws = load_workspace(repo_root / "examples" / "retail")
    ctx = RunContext(D, "test", Settings(workspace=str(ws.root), lake=lake, landing=str(tmp_path / "landing"),
                                         exports=str(tmp_path / "exports")))
    build_lake(spark, ws, ctx.lake)
    return ws, ctx


def test_evaluate_then_export_marketing_landing(spark: SparkSession, setup: tuple[Workspace, RunContext]) -> None:
    ws, ctx = setup
    folder = Path(ctx.settings.exports) / "marketing"
    names = {a: f"marketing_landing_{a}_20261127.csv" for a in ("gold_members", "cart_abandoners",
                                                                 "french_high_points")}
    expected_files = {
        names["gold_members"]: HEADER
        + "C1,ann@example.com,Ann,gold,FR,realized,2026-11-28T00:00:00Z\n"
        # RFC 4180, the destinations' default: a quote inside a quoted field is doubled
        + 'C2|C3,bob@example.com,"Bob ""Bobby"", Jr",platinum,DE,realized,2026-11-28T00:00:00Z\n',
        # Cy, an anonymous visitor, has neither a CRM id nor an e-mail: a row that identifies no one is not sent.
        names["cart_abandoners"]: HEADER,
        names["french_high_points"]: HEADER,  # no member: the header only
    }

    for attempt in range(2):  # the second run replaces the same files with the same bytes
        metrics = evaluate_audiences.run(spark, ws, ctx)
        assert {k: v for k, v in metrics.items() if k.endswith(".size")} == {
            "gold_members.size": 2, "cart_abandoners.size": 1, "french_high_points.size": 0,
            "engaged_readers.size": 1}, attempt
        exported = export.run(spark, ws, ctx, "marketing_landing")

        assert sorted(os.listdir(folder)) == sorted(expected_files), attempt  # no temporary folder left
        assert {n: (folder / n).read_text(encoding="utf-8") for n in expected_files} == expected_files, attempt
        sizes = {n: len(text.encode("utf-8")) for n, text in expected_files.items()}
        assert exported == {"received": 3, "activated": 2, "failed": 0, "excluded.consent": 0,
                            "excluded.no_identity": 1, "excluded.missing_mandatory": 0, "excluded.deduplicated": 0,
                            "files": 3, "rows": 2,
                            "bytes": sum(sizes.values())}, attempt

        ledger = spark.read.format("delta").load(ctx.lake.path(EXPORT_LEDGER)).collect()
        assert sorted((r["file_name"], r["audience_id"], r["rows"], r["bytes"], r["sha256"], r["location"],
                       r["mode"], r["status"]) for r in ledger) == sorted(
            (names[a], a, rows, sizes[names[a]], hashlib.sha256(expected_files[names[a]].encode()).hexdigest(),
             f"file://{folder / names[a]}", "full", "delivered")
            for a, rows in (("gold_members", 2), ("cart_abandoners", 0), ("french_high_points", 0))), attempt
        metrics = spark.read.format("delta").load(ctx.lake.path(DESTINATION_METRICS)).collect()
        assert [(r["received"], r["activated"], r["excluded"], r["failed"], r["files"], r["rows"], r["status"])
                for r in metrics] == [(3, 2, {"consent": 0, "no_identity": 1, "missing_mandatory": 0,
                                              "deduplicated": 0}, 0, 3, 2 + 0 + 0, "delivered")], attempt


def test_file_names(repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    dest = ws.destinations["marketing_landing"]
    gold = ws.audiences["gold_members"]
    stamp = evaluation_stamp(D)
    assert render_file_name(dest, gold.id, gold.name, stamp) == "marketing_landing_gold_members_20261127.csv"
    assert slugify("Crème brûlée & co: 1,000 points!") == "creme-brulee-co-1-000-points"
    named = dest.model_copy(update={"file_name": "{date}-{destination}-{audience_id}-{audience_name}-{datetime}"})
    assert render_file_name(named, gold.id, gold.name, stamp) == \
        "20261127-marketing_landing-gold_members-gold-and-platinum-loyalty-members-20261127T000000.csv"
