"""The Activation dashboard's data layer: masking, the aggregates the jobs write, and the deltalake reads the view
makes (figures equal to a Spark re-computation over the same tables; a new commit is seen, an old one cached)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.delta_io import replace_slice
from cdp.lake import (
    AUDIENCE_CATALOG,
    AUDIENCE_SIZES,
    BATCH_LEDGER,
    DESTINATION_METRICS,
    IDENTITY_SUMMARY,
    QUALITY_RESULTS,
    QUARANTINE,
    QUARANTINE_SUMMARY,
    Lake,
    TableSpec,
)
from cdp.monitoring.aggregates import audience_sizes, identity_summary, quarantine_summary
from cdp.monitoring.dashboard_data import DashboardData
from cdp.monitoring.masking import mask_email, mask_raw

D1, D2, D3 = dt.date(2026, 11, 27), dt.date(2026, 11, 28), dt.date(2026, 11, 29)


def test_masking_keeps_no_e_mail_and_no_phone() -> None:
    assert mask_email("ann@example.com") == "a***@e***.com"
    assert mask_email("x@localhost") == "x***@l***"
    assert mask_raw("C001,Ann@Example.com,+33 6 12 34 56 78,Ann,1990-04-01,2026-11-27T08:00:00Z") == (
        "C001,A***@E***.com,***78,Ann,1990-04-01,2026-11-27T08:00:00Z")
    assert mask_raw("C002,bob@example.co.uk,(415) 555-0100,Bob") == "C002,b***@e***.uk,***00,Bob"
    # A cookie id is a long digit run too; short numbers (points, revenue) stay.
    assert mask_raw('{"ecid": "' + "1" * 38 + '", "revenue": 59.9, "points": 1500}') == (
        '{"ecid": "***11", "revenue": 59.9, "points": 1500}')


def test_quarantine_summary_counts_per_reason_with_masked_samples(spark: SparkSession) -> None:
    def reason(code: str, field: str | None) -> dict[str, Any]:
        return {"code": code, "field": field, "message": "m"}

    rows = [("crm", D1, "crm.csv", 3, "C004,not-an-email,,Dan", [reason("invalid_identity", "email")]),
            ("crm", D1, "crm.csv", 2, "C009,bob@example.com,0612345678,", [reason("missing_required", "first_name"),
                                                                           reason("invalid_identity", "email")]),
            ("crm", D1, "crm.csv", 7, "C010,a@b.io,,", [reason("invalid_identity", "email")]),
            ("crm", D1, "crm.csv", 9, "C011,c@d.io,,", [reason("invalid_identity", "email")]),
            ("crm", D1, "old.csv", None, "old.csv", [reason("duplicate_file", None)])]
    quarantine = spark.createDataFrame(rows, QUARANTINE.schema)
    got = quarantine_summary(quarantine)
    assert got == [
        ("crm", D1, "duplicate_file", "", 1, ["old.csv"]),
        ("crm", D1, "invalid_identity", "email", 4, ["C009,b***@e***.com,***78,", "C004,not-an-email,,Dan",
                                                     "C010,a***@b***.io,,"]),
        ("crm", D1, "missing_required", "first_name", 1, ["C009,b***@e***.com,***78,"]),
    ]


def write(spark: SparkSession, lake: Lake, spec: TableSpec, rows: list[tuple[Any, ...]], predicate: str) -> None:
    assert spec.schema is not None
    replace_slice(spark.createDataFrame(rows, spec.schema), lake.path(spec), predicate, spec.partition_by)


@pytest.fixture(scope="module")
def filled(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Three run dates of every aggregate the view reads, with the jobs' schemas and partitioning (one write per
    table: Spark commits are the slow part of this test)."""
    root = Lake(str(tmp_path_factory.mktemp("dashboard") / "lake"))
    tables: dict[str, list[tuple[Any, ...]]] = {}
    catalog = [("gold", "Gold members", "streaming", "attribute-only rule"),
               ("cart", "Cart abandoners", "batch", "two events over 24 hours"),
               ("fr", "French", "streaming", "attribute-only rule")]
    sizes = {D1: {"gold": (2, 0), "cart": (1, 0), "fr": (1, 0)}, D2: {"gold": (1, 2), "cart": (0, 0), "fr": (0, 1)},
             D3: {"gold": (0, 3), "cart": (2, 0), "fr": (0, 0)}}
    for day, by_audience in sizes.items():
        tables.setdefault(AUDIENCE_CATALOG.name, []).extend((day, *c) for c in catalog)
        counts = {(a, s): n for a, (realized, existing) in by_audience.items()
                  for s, n in (("realized", realized), ("existing", existing))}
        exited = {"fr": 1} if day == D3 else {}
        tables.setdefault(AUDIENCE_SIZES.name, []).extend(
            tuple(r) for r in audience_sizes(day, [c[0] for c in catalog], counts, exited))
        for name, received, activated, excluded, status in (
                ("landing", 3, 2, {"consent": 1}, "delivered"), ("crm_api", 4, 0, {"policy": 4}, "blocked")):
            tables.setdefault(DESTINATION_METRICS.name, []).append((
                name, day, f"scheduled__{day}", "local" if name == "landing" else "http", "full", None, received,
                activated, excluded, 0, 1 if status == "delivered" else 0, activated, 100 * activated, status,
                None if status == "delivered" else "blocked by policy no_pii", None, None, None))
        for dataset in ("crm", "web"):
            tables.setdefault(BATCH_LEDGER.name, []).extend([
                (dataset, day, f"{dataset}_a", 10, 9, 1, "ingested", "r", "h", 0),
                (dataset, day, f"{dataset}_b", 5, 5, 0, "rejected" if dataset == "web" else "ingested", "r", "h2", 0)])
            tables.setdefault(QUARANTINE_SUMMARY.name, []).append(
                (dataset, day, "invalid_identity", "email", day.day - 26, ["C1,a***@e***.com"]))
        tables.setdefault(IDENTITY_SUMMARY.name, []).append((day, 3, 7, 4, {1: 1, 3: 2}, day.day - 27, 0, 0, 0, 0))
        tables.setdefault(QUALITY_RESULTS.name, []).append((
            day, "profiles", "profiles", "expect_column_values_to_not_be_null", '{"column": "profile_id"}', day != D2,
            None))
    for spec in (AUDIENCE_CATALOG, AUDIENCE_SIZES, DESTINATION_METRICS, BATCH_LEDGER, QUARANTINE_SUMMARY,
                 IDENTITY_SUMMARY, QUALITY_RESULTS):
        assert spec.schema is not None
        (spark.createDataFrame(tables[spec.name], spec.schema).write.format("delta")
         .partitionBy(*spec.partition_by).save(root.path(spec)))
    return root


def test_figures_equal_the_tables(spark: SparkSession, filled: Lake) -> None:
    data = DashboardData(filled.root)
    page = data.audiences(page_size=2)
    assert (page.run_date, page.total, page.page) == (D3, 3, 1)
    assert [(a.audience_id, a.name, a.evaluation, a.size, a.realized, a.exited, a.history) for a in page.rows] == [
        ("gold", "Gold members", "streaming", 3, 0, 0, [(D1, 2), (D2, 3), (D3, 3)]),
        ("cart", "Cart abandoners", "batch", 2, 2, 0, [(D1, 1), (D2, 0), (D3, 2)]),
    ]
    # The same figures from Spark over the same table (the oracle).
    sizes = spark.read.format("delta").load(filled.path(AUDIENCE_SIZES)).where(F.col("run_date") == D3)
    assert {r["audience_id"]: (r["size"], r["realized"], r["exited"]) for r in sizes.collect()} == {
        a.audience_id: (a.size, a.realized, a.exited) for a in data.audiences(page_size=10).rows}
    assert [a.audience_id for a in data.audiences(page=2, page_size=2).rows] == ["fr"]
    assert [a.exited for a in data.audiences(page=2, page_size=2).rows] == [1]
    assert [a.audience_id for a in data.audiences(search="FRENCH").rows] == ["fr"]
    assert [a.audience_id for a in data.audiences(evaluation="batch").rows] == ["cart"]

    runs = data.destination_runs(page_size=3)
    assert runs.total == 6
    assert [(r.destination, r.run_date, r.received, r.activated, r.excluded, r.failed, r.status, r.log_path)
            for r in runs.rows] == [
        ("crm_api", D3, 4, 0, {"policy": 4}, 0, "blocked",
         "/dags/cdp_daily/runs/scheduled__2026-11-29/tasks/export/mapped"),
        ("landing", D3, 3, 2, {"consent": 1}, 0, "delivered",
         "/dags/cdp_daily/runs/scheduled__2026-11-29/tasks/export/mapped"),
        ("crm_api", D2, 4, 0, {"policy": 4}, 0, "blocked",
         "/dags/cdp_daily/runs/scheduled__2026-11-28/tasks/export/mapped")]
    assert [(r.destination, r.run_date) for r in data.destination_runs(destination="landing", since=D2).rows] == [
        ("landing", D3), ("landing", D2)]
    assert data.destination_names() == ["crm_api", "landing"]

    days = data.ingestion_days(since=D3)
    ledger = spark.read.format("delta").load(filled.path(BATCH_LEDGER)).where(F.col("batch_date") == D3)
    oracle = {(r["dataset"], r["batch_date"]): (r["files"], r["read"], r["ingested"], r["quarantined"]) for r in
              ledger.groupBy("dataset", "batch_date").agg(
                  F.count(F.lit(1)).alias("files"), F.sum("rows_read").alias("read"),
                  F.sum(F.when(F.col("status") == "ingested", F.col("rows_valid")).otherwise(0)).alias("ingested"),
                  F.sum("rows_quarantined").alias("quarantined")).collect()}
    assert {(d.dataset, d.batch_date): (d.files, d.rows_read, d.rows_ingested, d.rows_quarantined)
            for d in days} == oracle == {("crm", D3): (2, 15, 14, 1), ("web", D3): (2, 15, 9, 1)}
    assert [(q.dataset, q.batch_date, q.records) for q in data.quarantine_reasons(limit=3)] == [
        ("crm", D3, 3), ("web", D3, 3), ("crm", D2, 2)]
    assert [(i.run_date, i.profiles, i.identities_per_profile, i.links_dropped) for i in data.identity_runs(2)] == [
        (D2, 3, {1: 1, 3: 2}, 1), (D3, 3, {1: 1, 3: 2}, 2)]
    assert [(c.run_date, c.success) for c in data.quality_checks(runs=2)] == [(D3, True), (D2, False)]


def test_a_new_commit_is_seen_and_an_unchanged_table_is_served_from_the_cache(spark: SparkSession, filled: Lake,
                                                                              tmp_path: Path) -> None:
    shutil.copytree(filled.root, tmp_path / "lake")  # the other tests read the module's lake as filled
    filled = Lake(str(tmp_path / "lake"))
    data = DashboardData(filled.root)
    assert data.destination_runs(destination="landing").rows[0].received == 3
    # The same query on the same table version is not read again.
    cached = data._cached(DESTINATION_METRICS, ("runs", "landing", None), lambda t: pytest.fail("not cached"), [])
    assert cached[0]["received"] == 3
    write(spark, filled, DESTINATION_METRICS, [(
        "landing", D3, "manual__x", "local", "full", None, 9, 9, {}, 0, 1, 9, 900, "delivered", None, None, None,
        None)], f"destination = 'landing' AND run_date = DATE'{D3}'")
    again = data.destination_runs(destination="landing").rows[0]
    assert (again.run_date, again.received, again.log_path) == (
        D3, 9, "/dags/cdp_daily/runs/manual__x/tasks/export/mapped")


def test_identity_summary_distribution(spark: SparkSession) -> None:
    sizes = spark.createDataFrame([("p1", 1), ("p2", 3), ("p3", 3)], "profile_id string, count long")
    row = [identity_summary(D1, sizes, 7, 4, {"links_dropped": 1, "profile_merges": 2})]
    assert [tuple(r) for r in row] == [(D1, 3, 7, 4, {1: 1, 3: 2}, 1, 0, 0, 2, 0)]


def test_an_empty_lake_shows_nothing_yet(lake: str) -> None:
    data = DashboardData(lake)
    assert data.audiences().rows == [] and data.audiences().run_date is None
    assert data.destination_runs().total == 0
    assert data.ingestion_days() == [] and data.identity_runs() == [] and data.quality_checks() == []


def test_the_view_pages_filters_and_escapes(filled: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdp_provider.dashboard.activation_app import VIEW_ACCESS, create_app
    from fastapi.testclient import TestClient

    # In-process client of the FastAPI app: the real API server serving it, with its auth manager, is
    # tests/integration/test_airflow_stack.py (and the browser, tests/e2e/dashboard_browser.py).
    monkeypatch.setenv("CDP_LAKE", filled.root)
    app = create_app()
    anonymous = TestClient(app).get("/")
    assert (anonymous.status_code, anonymous.json()) == (401, {"detail": "Not authenticated"})
    app.dependency_overrides[VIEW_ACCESS] = lambda: None  # a user the auth manager lets see the website
    client = TestClient(app)
    whole = client.get("/")
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/html")
    body = whole.text
    assert '<td data-figure="audience.gold.size">3</td>' in body
    assert '<span data-figure="destination.crm_api.2026-11-29.excluded.policy">policy 4</span>' in body
    assert '<span class="bad" data-figure="destination.crm_api.2026-11-29.status">blocked</span>' in body
    assert '<td data-figure="identity.distribution.3">2</td>' in body
    assert '<td data-figure="ingestion.web.2026-11-29.rows_ingested">9</td>' in body
    assert 'href="/dags/cdp_daily/runs/scheduled__2026-11-29/tasks/export/mapped"' in body
    assert "Data Docs" not in body  # no gate wrote the lake's GX Data Docs (tests/unit/test_quality_docs.py)
    searched = client.get("/", params={"q": "cart", "dest": "landing"}).text
    assert 'data-figure="audience.cart.size"' in searched and 'data-figure="audience.gold.size"' not in searched
    assert "destination.landing.2026-11-29.received" in searched and "destination.crm_api." not in searched
    # What a user types is shown back escaped, never as markup.
    assert 'value="&lt;b&gt;"' in client.get("/", params={"q": "<b>"}).text
    assert client.get("/", params={"evaluation": "sometimes"}).status_code == 422
