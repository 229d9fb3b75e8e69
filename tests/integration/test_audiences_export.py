"""evaluate_audiences then export against a small lake for the example workspace: exact files and log."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from cdp.destinations.rows import evaluation_stamp
from cdp.lake import DATASET, DESTINATION_METRICS, EXPORT_LEDGER, IDENTITY_MAP, PROFILES, Lake
from cdp.run_context import RunContext
from cdp.schemas import dataset_struct, spark_type
from cdp.settings import Settings
from cdp.workspace.file_names import render_file_name, slugify
from cdp.workspace.loader import Workspace, load_workspace
from jobs import evaluate_audiences, export

D = dt.date(2026, 11, 27)
UTC = dt.UTC
HEADER = "crm_id,email,first_name,loyalty_tier,country,membership_status,last_qualification_time\n"


def at(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def write_delta(spark: SparkSession, rows: list[tuple[Any, ...]], schema: T.StructType, path: str,
                partition_by: list[str] | None = None) -> None:
    writer = spark.createDataFrame(rows, schema).write.format("delta").mode("append")
    (writer.partitionBy(*partition_by) if partition_by else writer).save(path)


def build_lake(spark: SparkSession, ws: Workspace, lake: Lake) -> None:
    """PROFILES and IDENTITY_MAP of the run date, and the two event datasets (as ingest leaves them)."""
    attributes = ws.profile_attributes()
    profile_schema = T.StructType([
        T.StructField("run_date", T.DateType()), T.StructField("profile_id", T.StringType()),
        T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
        T.StructField("identity_count", T.IntegerType()),
        *[T.StructField(name, spark_type(spec)) for name, spec in attributes.items()],
    ])
    profiles: dict[str, tuple[dict[str, list[str]], dict[str, Any]]] = {
        "prof_a": ({"crm_id": ["C1"], "email": ["ann@example.com"], "ecid": ["E1"]},
                   {"crm_id": "C1", "email": "ann@example.com", "first_name": "Ann", "tier": "gold", "country": "FR",
                    "points": 1500, "consent_marketing": False}),
        # two CRM ids, unsorted in the map; a first name that needs quoting and escaping
        "prof_b": ({"crm_id": ["C3", "C2"], "loyalty_id": ["L2"]},
                   {"crm_id": "C2", "email": "bob@example.com", "first_name": 'Bob "Bobby", Jr',
                    "tier": "platinum", "country": "DE", "points": 200}),
        # an anonymous web visitor: no CRM id (an empty list exports as an empty cell)
        "prof_c": ({"ecid": ["E3"], "crm_id": []}, {"first_name": "Cy", "country": "US"}),
        "prof_d": ({"crm_id": ["C4"], "ecid": ["E4"]},
                   {"crm_id": "C4", "first_name": "Dee", "tier": "silver", "country": "FR", "points": 500}),
    }
    rows = [(D, pid, ids, sum(len(v) for v in ids.values()), *[values.get(a) for a in attributes])
            for pid, (ids, values) in profiles.items()]
    write_delta(spark, rows, profile_schema, lake.path(PROFILES), ["run_date"])

    first_seen = dt.date(2026, 11, 1)
    assert IDENTITY_MAP.schema is not None
    mapping = [(D, "ecid", "E1", 1, "prof_a"), (D, "email", "ann@example.com", 2, "prof_a"),
               (D, "crm_id", "C1", 3, "prof_a"), (D, "ecid", "E3", 4, "prof_c"), (D, "ecid", "E4", 5, "prof_d"),
               # the day before, E4 was resolved to another profile: must not be read for D
               (D - dt.timedelta(days=1), "ecid", "E4", 5, "prof_c")]
    write_delta(spark, [(*m, first_seen, D, m[3]) for m in mapping], IDENTITY_MAP.schema, lake.path(IDENTITY_MAP),
                ["run_date"])

    def meta(n: int, batch: dt.date) -> tuple[Any, ...]:
        return (f"file_{batch}.jsonl", n, batch, dt.datetime.combine(batch, dt.time(1), tzinfo=UTC))

    web = [
        ("w1", "add_to_cart", at(25), " E3 ", None, None, "sku1", None, *meta(1, dt.date(2026, 11, 25))),
        ("w2", "add_to_cart", at(26), "E4", "C4", None, "sku2", None, *meta(1, dt.date(2026, 11, 26))),
        ("w3", "purchase", at(27), "E4", "C4", None, "sku2", 20.0, *meta(1, D)),
        # 7 days before the run date: outside cart_abandoners' 7 days
        ("w4", "add_to_cart", at(20), "E1", None, None, "sku3", None, *meta(1, dt.date(2026, 11, 20))),
        # landed after the run date: a run of D must not see it
        ("w5", "add_to_cart", at(27, 12), "E1", None, None, "sku3", None, *meta(1, dt.date(2026, 11, 28))),
    ]
    write_delta(spark, web, dataset_struct(ws.schema_of("web_events")), lake.path(DATASET, "web_events"))
    email = [
        ("m1", "open", at(20), " ANN@example.com", "camp1", *meta(1, dt.date(2026, 11, 20))),
        ("m2", "open", at(26), "ann@example.com", "camp2", *meta(1, dt.date(2026, 11, 26))),
    ]
    write_delta(spark, email, dataset_struct(ws.schema_of("email_events")), lake.path(DATASET, "email_events"))


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
        assert exported == {"received": 3, "activated": 2, "failed": 0, "excluded.no_identity": 1,
                            "excluded.missing_mandatory": 0, "excluded.deduplicated": 0, "files": 3, "rows": 2,
                            "bytes": sum(sizes.values())}, attempt

        ledger = spark.read.format("delta").load(ctx.lake.path(EXPORT_LEDGER)).collect()
        assert sorted((r["file_name"], r["audience_id"], r["rows"], r["bytes"], r["sha256"], r["location"],
                       r["mode"], r["status"]) for r in ledger) == sorted(
            (names[a], a, rows, sizes[names[a]], hashlib.sha256(expected_files[names[a]].encode()).hexdigest(),
             f"file://{folder / names[a]}", "full", "delivered")
            for a, rows in (("gold_members", 2), ("cart_abandoners", 0), ("french_high_points", 0))), attempt
        metrics = spark.read.format("delta").load(ctx.lake.path(DESTINATION_METRICS)).collect()
        assert [(r["received"], r["activated"], r["excluded"], r["failed"], r["files"], r["rows"], r["status"])
                for r in metrics] == [(3, 2, {"no_identity": 1, "missing_mandatory": 0, "deduplicated": 0}, 0, 3,
                                       2 + 0 + 0, "delivered")], attempt


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
