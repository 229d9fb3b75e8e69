"""validate then ingest on the example workspace: landed files in, quarantine, ledger and dataset tables out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp import job
from cdp.errors import BatchRejectedError
from cdp.lake import BATCH_LEDGER, DATASET, QUARANTINE, RUN_METRICS, STAGING, Lake
from cdp.run_context import RunContext
from cdp.schemas import dataset_struct
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import ingest, validate

DAY = dt.date(2024, 1, 5)
CRM_HEADER = "crm_id,email,phone,first_name,last_name,birth_date,country,city,consent_marketing,updated_at"
CRM_COLUMNS = CRM_HEADER.split(",")
E1, E2 = "1" * 38, "2" * 38  # ECIDs are 38 digits (namespace pattern of the example)


@pytest.fixture()
def example(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


def relaxed(ws: Workspace) -> Workspace:
    """The example workspace with the rejection threshold off, to look at quarantined rows of tiny batches."""
    guardrails = ws.config.guardrails.model_copy(update={"max_rejected_share": 1.0})
    return dataclasses.replace(ws, config=ws.config.model_copy(update={"guardrails": guardrails}))


def context(tmp_path: Path, lake: str, day: dt.date = DAY) -> RunContext:
    settings = Settings(workspace="unused", lake=lake, landing=str(tmp_path / "landing"),
                        exports=str(tmp_path / "exports"))
    return RunContext(run_date=day, run_id=f"test-{day.isoformat()}", settings=settings)


def land(tmp_path: Path, folder: str, day: dt.date, name: str, content: str | bytes) -> str:
    path = tmp_path / "landing" / folder / day.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def rows(spark: SparkSession, path: str, columns: list[str], where: str = "true") -> list[tuple[object, ...]]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(path).where(where).select(*columns).collect())


def quarantined(spark: SparkSession, lake: Lake, dataset: str) -> list[tuple[str, int | None, list[str]]]:
    df = spark.read.format("delta").load(lake.path(QUARANTINE)).where(F.col("dataset") == dataset)
    return sorted((Path(r["source_file"]).name, r["row_number"], [x["code"] for x in r["reasons"]])
                  for r in df.collect())


def ledger(spark: SparkSession, lake: Lake, dataset: str) -> list[tuple[object, ...]]:
    df = spark.read.format("delta").load(lake.path(BATCH_LEDGER)).where(F.col("dataset") == dataset)
    return sorted((Path(r["source_file"]).name, r["rows_read"], r["rows_valid"], r["rows_quarantined"],
                   r["status"], r["run_id"]) for r in df.collect())


def hit(**fields: object) -> str:
    """One JSON line, compact as producers write it."""
    return json.dumps(fields, separators=(",", ":"))


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_validate_then_ingest_every_format(spark: SparkSession, example: Workspace, lake: str,
                                           tmp_path: Path) -> None:
    ws = relaxed(example)
    ctx = context(tmp_path, lake)
    crm = land(tmp_path, "crm", DAY, "crm_export.csv", "\n".join([
        CRM_HEADER,
        "C1,ann@example.com,+33 6 12 34 56 78,Ann,Lee,1990-04-01,FR,Paris,true,2024-01-05T08:00:00Z",
        "C2,bob@example,,Bob,Ray,1985-13-01,US,Boston,false,2024-01-05T09:00:00Z",
        "C3,cat@example.com,,Cat,Ng,,DE,Berlin,false,2024-01-05T10:00:00Z,oops",
        "C4,dan@example.com",
        "",
        "C5,eve@example.com,,Eve,Kim,,FR,Lyon,no,2024-01-04T07:00:00Z",
        ",anonymous,,,,,,,,2024-01-05T11:00:00Z",
    ]) + "\n")
    web = land(tmp_path, "web", DAY, "hits.jsonl", "\n".join([
        hit(event_id="w1", event_type="page_view", timestamp="2024-01-05T10:00:00Z", ecid=E1, crm_id="C1",
            page_url="https://shop.example/"),
        '{"event_id":"w2","event_type":"page_view",',
        hit(event_id="w3", event_type="checkout", timestamp="2024-01-05T10:05:00Z", ecid=E1),
        hit(event_id="w4", event_type="purchase", ecid=E2, revenue=19.99),
        hit(event_id="w1", event_type="product_view", timestamp="2024-01-05T10:06:00Z", ecid=E1),
        hit(event_id="w5", event_type="purchase", timestamp="2024-01-05T10:07:00Z", ecid=E2, revenue=19.99),
    ]))
    members = pa.table({
        "loyalty_id": ["L1", "L2", "L3"],
        "email": ["ann@example.com", "bob@example.com", None],
        "tier": ["gold", "diamond", "silver"],
        "points": pa.array([1200, 10, 300], pa.int32()),  # narrower than the declared long: still accepted
        "joined_on": [dt.date(2020, 1, 1), dt.date(2021, 6, 1), dt.date(2022, 3, 15)],
        "updated_at": pa.array([ts("2024-01-05T06:00:00")] * 3, pa.timestamp("us", tz="UTC")),
    })
    loyalty = str(tmp_path / "landing" / "loyalty" / DAY.isoformat() / "members.parquet")
    Path(loyalty).parent.mkdir(parents=True)
    pq.write_table(members, loyalty)
    broken = land(tmp_path, "loyalty", DAY, "members_broken.parquet", b"PAR1 this upload was cut short")

    assert validate.run(spark, ws, ctx, "crm_profiles") == {
        "rows_read": 6, "rows_valid": 2, "rows_quarantined": 4, "files": 1}
    assert validate.run(spark, ws, ctx, "web_events") == {
        "rows_read": 6, "rows_valid": 2, "rows_quarantined": 4, "files": 1}
    assert validate.run(spark, ws, ctx, "loyalty_members") == {
        "rows_read": 4, "rows_valid": 2, "rows_quarantined": 2, "files": 2}

    lk = ctx.lake
    # The tables have the declared columns and types, in order (Delta stores every column as nullable).
    assert spark.read.format("delta").load(lk.path(QUARANTINE)).schema.simpleString() == (
        QUARANTINE.schema.simpleString())
    assert spark.read.format("delta").load(lk.path(BATCH_LEDGER)).schema.simpleString() == (
        BATCH_LEDGER.schema.simpleString())
    assert spark.read.format("delta").load(lk.path(STAGING, "crm_profiles")).schema.simpleString() == (
        dataset_struct(ws.schema_of("crm_profiles")).simpleString())
    assert quarantined(spark, lk, "crm_profiles") == [
        ("crm_export.csv", 3, ["bad_format", "wrong_type"]),
        ("crm_export.csv", 4, ["malformed_record"]),
        ("crm_export.csv", 5, ["malformed_record"]),
        ("crm_export.csv", 8, ["missing_required", "bad_format", "blocked_identity"]),
    ]
    assert quarantined(spark, lk, "web_events") == [
        ("hits.jsonl", 2, ["malformed_record"]),
        ("hits.jsonl", 3, ["not_in_enum"]),
        ("hits.jsonl", 4, ["missing_required"]),
        ("hits.jsonl", 5, ["duplicate_event_id"]),
    ]
    assert quarantined(spark, lk, "loyalty_members") == [
        ("members.parquet", 2, ["not_in_enum"]),
        ("members_broken.parquet", None, ["file_unreadable"]),
    ]
    # The exact rows a data engineer finds in quarantine: raw text and every reason.
    q = spark.read.format("delta").load(lk.path(QUARANTINE))
    row8 = q.where((F.col("dataset") == "crm_profiles") & (F.col("row_number") == 8)).first()
    assert row8 is not None
    assert row8.asDict(recursive=True) == {
        "dataset": "crm_profiles", "batch_date": DAY, "source_file": crm, "row_number": 8,
        "raw": ",anonymous,,,,,,,,2024-01-05T11:00:00Z",
        "reasons": [
            {"code": "missing_required", "field": "crm_id",
             "message": "required field 'crm_id' is missing"},
            {"code": "bad_format", "field": "email",
             "message": "value 'anonymous' is not a valid email address (expected local@domain.tld)"},
            {"code": "blocked_identity", "field": "email",
             "message": "identity value 'anonymous' is blocked (guardrails.blocked_identity_values)"},
        ],
    }
    unreadable = q.where(F.col("source_file") == broken).first()
    assert unreadable is not None
    assert (unreadable["row_number"], unreadable["raw"]) == (None, None)
    assert unreadable["reasons"][0]["message"].startswith("file cannot be read as Parquet: ")
    members_row = q.where(F.col("source_file") == loyalty).first()
    assert members_row is not None
    assert members_row["raw"] == ('{"loyalty_id":"L2","email":"bob@example.com","tier":"diamond","points":10,'
                                  '"joined_on":"2021-06-01","updated_at":"2024-01-05T06:00:00.000Z"}')

    # The ledger reconciles: per file, read = valid + quarantined, and it matches the quarantine table.
    assert ledger(spark, lk, "crm_profiles") == [("crm_export.csv", 6, 2, 4, "staged", "test-2024-01-05")]
    assert ledger(spark, lk, "web_events") == [("hits.jsonl", 6, 2, 4, "staged", "test-2024-01-05")]
    assert ledger(spark, lk, "loyalty_members") == [
        ("members.parquet", 3, 2, 1, "staged", "test-2024-01-05"),
        ("members_broken.parquet", 1, 0, 1, "unreadable", "test-2024-01-05"),
    ]

    assert ingest.run(spark, ws, ctx, "crm_profiles") == {
        "rows_staged": 2, "rows_inserted": 2, "rows_updated": 0,
"rows_deleted": 0, "rows_total": 2, "files_ingested": 1}
    assert ingest.run(spark, ws, ctx, "web_events") == {
        "rows_staged": 2, "rows_inserted": 2, "rows_updated": 0,
"rows_deleted": 0, "rows_total": 2, "files_ingested": 1}
    assert ingest.run(spark, ws, ctx, "loyalty_members") == {
        "rows_staged": 2, "rows_inserted": 2, "rows_updated": 0,
"rows_deleted": 0, "rows_total": 2, "files_ingested": 1}

    assert rows(spark, lk.path(DATASET, "crm_profiles"), [*CRM_COLUMNS, "_source_file", "_row_number",
                                                          "_batch_date", "_record_ts"]) == [
        ("C1", "ann@example.com", "+33 6 12 34 56 78", "Ann", "Lee", dt.date(1990, 4, 1), "FR", "Paris", True,
         ts("2024-01-05T08:00:00"), crm, 2, DAY, ts("2024-01-05T08:00:00")),
        ("C5", "eve@example.com", None, "Eve", "Kim", None, "FR", "Lyon", False,
         ts("2024-01-04T07:00:00"), crm, 7, DAY, ts("2024-01-04T07:00:00")),
    ]
    assert rows(spark, lk.path(DATASET, "web_events"), ["event_id", "event_type", "timestamp", "ecid", "crm_id",
                                                        "page_url", "revenue", "_source_file", "_row_number"]) == [
        ("w1", "page_view", ts("2024-01-05T10:00:00"), E1, "C1", "https://shop.example/", None, web, 1),
        ("w5", "purchase", ts("2024-01-05T10:07:00"), E2, None, None, 19.99, web, 6),
    ]
    assert rows(spark, lk.path(DATASET, "loyalty_members"), ["loyalty_id", "email", "tier", "points", "joined_on",
                                                             "updated_at", "_row_number"]) == [
        ("L1", "ann@example.com", "gold", 1200, dt.date(2020, 1, 1), ts("2024-01-05T06:00:00"), 1),
        ("L3", None, "silver", 300, dt.date(2022, 3, 15), ts("2024-01-05T06:00:00"), 3),
    ]


def crm_file(lines: list[str]) -> str:
    return "\n".join([CRM_HEADER, *lines]) + "\n"


def crm_row(crm_id: str, city: str, updated_at: str) -> str:
    return f"{crm_id},{crm_id.lower()}@example.com,,,,,FR,{city},true,{updated_at}"


def test_rerun_and_backfill_give_the_date_ordered_result(spark: SparkSession, example: Workspace, lake: str,
                                                         tmp_path: Path) -> None:
    ws = example
    day4, day5 = dt.date(2024, 1, 4), DAY
    land(tmp_path, "crm", day4, "crm.csv", crm_file([
        crm_row("C1", "Old town", "2024-01-03T09:00:00Z"),  # older than what day 5 brings
        crm_row("C2", "Nantes", "2024-01-04T12:00:00Z"),  # newer than day 5's C2 record
        crm_row("C9", "Lille", "2024-01-04T08:00:00Z"),
    ]))
    land(tmp_path, "crm", day5, "crm.csv", crm_file([
        crm_row("C1", "Paris", "2024-01-05T08:00:00Z"),
        crm_row("C2", "Rennes", "2024-01-04T06:00:00Z"),
    ]))
    land(tmp_path, "web", day4, "hits.jsonl", hit(event_id="w1", event_type="page_view",
                                                  timestamp="2024-01-04T23:59:00Z", ecid=E1))
    land(tmp_path, "web", day5, "hits.jsonl", "\n".join([
        # resent the next day, changed
        hit(event_id="w1", event_type="purchase", timestamp="2024-01-05T00:01:00Z", ecid=E1),
        hit(event_id="w2", event_type="page_view", timestamp="2024-01-05T10:00:00Z", ecid=E1),
    ]))

    def both(day: dt.date) -> list[dict[str, int]]:
        """validate then ingest both datasets for a day; the ingest metrics."""
        ctx = context(tmp_path, lake, day)
        out = []
        for dataset in ("crm_profiles", "web_events"):
            validate.run(spark, ws, ctx, dataset)
            out.append(ingest.run(spark, ws, ctx, dataset))
        return out

    crm_path = Lake(lake).path(DATASET, "crm_profiles")
    web_path = Lake(lake).path(DATASET, "web_events")
    crm_cols = ["crm_id", "city", "updated_at", "_batch_date"]
    web_cols = ["event_id", "event_type", "timestamp", "_batch_date"]

    assert both(day5) == [{"rows_staged": 2, "rows_inserted": 2, "rows_updated": 0,
                           "rows_deleted": 0, "rows_total": 2, "files_ingested": 1},
                          {"rows_staged": 2, "rows_inserted": 2, "rows_updated": 0,
                           "rows_deleted": 0, "rows_total": 2, "files_ingested": 1}]
    first = (rows(spark, crm_path, ["*"]), rows(spark, web_path, ["*"]))
    # Same day again: the day's keys are re-decided from the staging history, nothing differs, nothing changes.
    assert both(day5) == [{"rows_staged": 2, "rows_inserted": 0, "rows_updated": 0,
                           "rows_deleted": 0, "rows_total": 2, "files_ingested": 1},
                          {"rows_staged": 2, "rows_inserted": 0, "rows_updated": 0,
                           "rows_deleted": 0, "rows_total": 2, "files_ingested": 1}]
    assert (rows(spark, crm_path, ["*"]), rows(spark, web_path, ["*"])) == first

    # Backfill of an earlier day, processed last.
    assert both(day4) == [{"rows_staged": 3, "rows_inserted": 1, "rows_updated": 1,
                           "rows_deleted": 0, "rows_total": 3, "files_ingested": 1},
                          {"rows_staged": 1, "rows_inserted": 0, "rows_updated": 1,
                           "rows_deleted": 0, "rows_total": 2, "files_ingested": 1}]
    # What loading days 4 and 5 in order gives: the newest record per customer, the first sighting per event.
    assert rows(spark, crm_path, crm_cols) == [
        ("C1", "Paris", ts("2024-01-05T08:00:00"), day5),
        ("C2", "Nantes", ts("2024-01-04T12:00:00"), day4),
        ("C9", "Lille", ts("2024-01-04T08:00:00"), day4),
    ]
    assert rows(spark, web_path, web_cols) == [
        ("w1", "page_view", ts("2024-01-04T23:59:00"), day4),
        ("w2", "page_view", ts("2024-01-05T10:00:00"), day5),
    ]


def test_rejected_batch_keeps_quarantine_and_stages_nothing(spark: SparkSession, example: Workspace, lake: str,
                                                            tmp_path: Path) -> None:
    ctx = context(tmp_path, lake)
    land(tmp_path, "web", DAY, "hits.jsonl", "\n".join([
        *[hit(event_id=f"w{n}", event_type="page_view", timestamp="2024-01-05T10:00:00Z", ecid=E1)
          for n in range(1, 8)],
        hit(event_id="w8", event_type="wishlist", timestamp="2024-01-05T10:00:00Z", ecid=E1),
        hit(event_id="w9", event_type="refund", timestamp="2024-01-05T10:00:00Z", ecid=E1),
        hit(event_id="w10", event_type="page_view", ecid=E1),
    ]))
    with pytest.raises(BatchRejectedError) as caught:
        validate.run(spark, example, ctx, "web_events")
    assert str(caught.value) == ("dataset web_events: 3 of 10 records rejected (30.0% > 10.0% allowed); "
                                 "top reasons: not_in_enum 2, missing_required 1")

    lk = ctx.lake
    assert quarantined(spark, lk, "web_events") == [
        ("hits.jsonl", 8, ["not_in_enum"]),
        ("hits.jsonl", 9, ["not_in_enum"]),
        ("hits.jsonl", 10, ["missing_required"]),
    ]
    assert ledger(spark, lk, "web_events") == [("hits.jsonl", 10, 7, 3, "rejected", "test-2024-01-05")]
    assert spark.read.format("delta").load(lk.path(STAGING, "web_events")).count() == 0
    assert rows(spark, lk.path(RUN_METRICS), ["step", "scope", "metric", "value"]) == [
        ("validate", "web_events", "files", 1), ("validate", "web_events", "rows_quarantined", 3),
        ("validate", "web_events", "rows_read", 10), ("validate", "web_events", "rows_valid", 7),
    ]
    assert ingest.run(spark, example, ctx, "web_events") == {
        "rows_staged": 0, "rows_inserted": 0, "rows_updated": 0,
"rows_deleted": 0, "rows_total": 0, "files_ingested": 0}


def test_main_with_nothing_landed_records_zero_metrics(spark: SparkSession, lake: str, tmp_path: Path,
                                                       repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The jobs get the test session instead of building one (getOrCreate would reconfigure it).
    monkeypatch.setattr(job, "get_session", lambda app_name, **_settings: spark)
    args = ["--run-date", "2024-01-05", "--run-id", "manual-1", "--dataset", "email_events",
            "--workspace", str(repo_root / "examples" / "retail"), "--lake", lake,
            "--landing", str(tmp_path / "landing"), "--exports", str(tmp_path / "exports")]
    validate.main(args)
    ingest.main(args)
    lk = Lake(lake)
    assert rows(spark, lk.path(RUN_METRICS), ["run_date", "step", "scope", "metric", "value"]) == [
        (DAY, "ingest", "email_events", metric, 0)
        for metric in ("files_ingested", "rows_deleted", "rows_inserted", "rows_staged", "rows_total", "rows_updated")
    ] + [
        (DAY, "validate", "email_events", metric, 0) for metric in ("files", "rows_quarantined", "rows_read",
                                                                      "rows_valid")
    ]
    assert spark.read.format("delta").load(lk.path(STAGING, "email_events")).count() == 0
    assert spark.read.format("delta").load(lk.path(BATCH_LEDGER)).count() == 0


def test_event_ids_already_stored_by_an_earlier_day_are_quarantined(spark: SparkSession, example: Workspace,
                                                                    lake: str, tmp_path: Path) -> None:
    ws = relaxed(example)
    day4, day5 = dt.date(2024, 1, 4), DAY
    land(tmp_path, "web", day4, "hits.jsonl", "\n".join([
        hit(event_id="w1", event_type="page_view", timestamp="2024-01-04T10:00:00Z", ecid=E1),
        hit(event_id="w2", event_type="page_view", timestamp="2024-01-04T11:00:00Z", ecid=E1),
    ]))
    day5_file = land(tmp_path, "web", day5, "hits.jsonl", "\n".join([
        hit(event_id="w2", event_type="purchase", timestamp="2024-01-05T09:00:00Z", ecid=E1),  # resent
        hit(event_id="w3", event_type="page_view", timestamp="2024-01-05T10:00:00Z", ecid=E1),
        hit(event_id="w4", event_type="page_view", timestamp="2024-01-07T10:00:00Z", ecid="123"),
    ]))
    for day in (day4, day5, day5):  # day 5 twice: its own rows must not count as already stored
        ctx = context(tmp_path, lake, day)
        metrics = validate.run(spark, ws, ctx, "web_events")
        ingest.run(spark, ws, ctx, "web_events")
    assert metrics == {"rows_read": 3, "rows_valid": 1, "rows_quarantined": 2, "files": 1}

    lk = Lake(lake)
    q = spark.read.format("delta").load(lk.path(QUARANTINE)).where(F.col("batch_date") == day5)
    assert sorted((r["row_number"], [tuple(x) for x in r["reasons"]]) for r in q.collect()) == [
        (1, [("duplicate_event_id", "event_id",
              "event id 'w2' is already stored in the dataset from the batch of 2024-01-04")]),
        (3, [("future_timestamp", "timestamp",
              "timestamp '2024-01-07T10:00:00Z' is in the future: later than 2024-01-06T01:00:00Z, the end of the "
              "run day 2024-01-05 plus 60 minutes (guardrails.max_future_skew_minutes)"),
             ("bad_identity_format", "ecid",
              "identity value '123' does not match the pattern of namespace ecid (^[0-9]{38}$)")]),
    ]
    assert ledger(spark, lk, "web_events") == [("hits.jsonl", 2, 2, 0, "ingested", "test-2024-01-04"),
                                               ("hits.jsonl", 3, 1, 2, "ingested", "test-2024-01-05")]
    assert [r["source_file"] for r in q.collect()] == [day5_file, day5_file]
    assert rows(spark, lk.path(DATASET, "web_events"), ["event_id", "event_type", "_batch_date"]) == [
        ("w1", "page_view", day4), ("w2", "page_view", day4), ("w3", "page_view", day5)]
