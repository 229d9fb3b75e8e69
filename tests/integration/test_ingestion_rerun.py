"""Ingestion stays right across re-runs and failures: every row accounted for, nothing kept from an earlier
attempt, nothing refused as a duplicate that never reached the table, no step reading a half-written day."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cdp import job
from cdp.delta_io import replace_slice
from cdp.lake import BATCH_LEDGER, QUARANTINE, Lake
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace
from jobs import ingest, validate

D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
E1, E2 = "1" * 38, "2" * 38
CRM_HEADER = "crm_id,email,phone,first_name,last_name,birth_date,country,city,consent_marketing,updated_at\n"


@pytest.fixture()
def example(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


def with_rejected_share(ws: Workspace, share: float) -> Workspace:
    guardrails = ws.config.guardrails.model_copy(update={"max_rejected_share": share})
    return dataclasses.replace(ws, config=ws.config.model_copy(update={"guardrails": guardrails}))


def context(tmp_path: Path, lake: str, day: dt.date, workspace: str = "unused") -> RunContext:
    return RunContext(run_date=day, run_id=f"run-{day.isoformat()}", settings=Settings(
        workspace=workspace, lake=lake, landing=str(tmp_path / "landing"), exports=str(tmp_path / "exports")))


def land(tmp_path: Path, folder: str, day: dt.date, name: str, content: str | bytes) -> Path:
    path = tmp_path / "landing" / folder / day.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def hit(event_id: str, ecid: str = E1, **extra: object) -> str:
    return json.dumps({"event_id": event_id, "event_type": "page_view", "timestamp": "2024-03-01T10:00:00Z",
                       "ecid": ecid, **extra}) + "\n"


def rows(spark: SparkSession, lake: str, table: str, *columns: str) -> list[tuple[object, ...]]:
    df = spark.read.format("delta").load(f"{lake}/{table}")
    return sorted(tuple(r[c] for c in columns) for r in df.collect())


def ledger(spark: SparkSession, lake: str) -> list[tuple[object, ...]]:
    df = spark.read.format("delta").load(Lake(lake).path(BATCH_LEDGER))
    return sorted((r["dataset"], r["batch_date"], Path(r["source_file"]).name, r["rows_read"], r["rows_valid"],
                   r["rows_quarantined"], r["status"], r["identities_dropped"]) for r in df.collect())


def quarantine(spark: SparkSession, lake: str) -> list[tuple[object, ...]]:
    df = spark.read.format("delta").load(Lake(lake).path(QUARANTINE))
    return sorted((Path(r["source_file"]).name, r["row_number"], r["raw"],
                   [(x["code"], x["field"], x["message"]) for x in r["reasons"]]) for r in df.collect())


def test_headerless_csv_is_quarantined_whole_and_its_first_line_is_not_logged(
        spark: SparkSession, example: Workspace, lake: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = ["C9,secret.person@example.com,,Sam,Secret,,FR,Paris,true,2024-03-01T08:00:00Z",
             "C8,other.person@example.com,,Oli,Other,,FR,Lyon,true,2024-03-01T08:00:00Z"]
    land(tmp_path, "crm", D1, "crm.csv", "\n".join(lines) + "\n")
    ctx = context(tmp_path, lake, D1)
    with caplog.at_level("INFO"), pytest.raises(validate.BatchRejectedError):
        validate.run(spark, example, ctx, "crm_profiles")  # 2 of 2 quarantined: over the rejected share
    assert "secret.person" not in caplog.text and "C9" not in caplog.text
    expected = ("the file's header line does not match schema crm_profile: required field(s) crm_id, updated_at "
                "are not among its columns; column(s) C9, secret.person@example.com, , Sam, Secret, , FR, Paris, "
                "true, 2024-03-01T08:00:00Z are not fields of schema crm_profile (declare them, or set "
                "csv.unknown_columns: ignore in the dataset). Every record of the file is quarantined, its first "
                "line included; fix the file and re-run the day. If the file has no header line, set csv.header: "
                "false in the dataset.")
    # The blank column name appears twice, so it is also reported as a duplicate column.
    found = quarantine(spark, lake)
    assert [(name, row, raw) for name, row, raw, _ in found] == [("crm.csv", 1, lines[0]), ("crm.csv", 2, lines[1])]
    reasons = found[0][3]
    assert [(code, field) for code, field, _ in reasons] == [("bad_header", None)]
    assert reasons[0][2].replace("; column(s)  appear more than once", "") == expected
    assert ledger(spark, lake) == [("crm_profiles", D1, "crm.csv", 2, 0, 2, "rejected", 0)]


def test_header_with_an_unknown_column_is_refused_unless_ignored(spark: SparkSession, example: Workspace, lake: str,
                                                                tmp_path: Path) -> None:
    land(tmp_path, "crm", D1, "crm.csv", CRM_HEADER.strip() + ",shoe_size\n"
         "C1,ann@example.com,,Ann,A,,FR,Paris,true,2024-03-01T08:00:00Z,38\n")
    ctx = context(tmp_path, lake, D1)
    with pytest.raises(validate.BatchRejectedError):
        validate.run(spark, example, ctx, "crm_profiles")
    assert [r[3][0][0] for r in quarantine(spark, lake)] == ["bad_header", "bad_header"]

    dataset = example.datasets["crm_profiles"]
    lenient = dataset.model_copy(update={"csv": dataset.csv.model_copy(update={"unknown_columns": "ignore"})})
    ws = dataclasses.replace(example, datasets={**example.datasets, "crm_profiles": lenient})
    metrics = validate.run(spark, ws, ctx, "crm_profiles")
    assert (metrics["rows_read"], metrics["rows_valid"]) == (1, 1)
    assert rows(spark, lake, "staging/crm_profiles", "crm_id", "email") == [("C1", "ann@example.com")]


def test_non_numbers_and_invalid_utf8_are_quarantined_not_changed(spark: SparkSession, example: Workspace, lake: str,
                                                                  tmp_path: Path) -> None:
    content = (hit("w1", revenue=12.5).encode() + b'{"event_id":"w2","event_type":"purchase","timestamp":'
               b'"2024-03-01T10:00:00Z","ecid":"' + E1.encode() + b'","revenue":NaN}\n'
               + hit("w3", revenue="Infinity").encode()
               + b'{"event_id":"w4","event_type":"page_view","timestamp":"2024-03-01T10:00:00Z","ecid":"'
               + E1.encode() + b'","product_id":"caf\xe9"}\n' + hit("w6").encode())
    land(tmp_path, "web", D1, "web.jsonl", content)
    ctx = context(tmp_path, lake, D1)
    ws = with_rejected_share(example, 0.9)
    validate.run(spark, ws, ctx, "web_events")
    found = {row: [(code, field) for code, field, _ in reasons] for _, row, _, reasons in quarantine(spark, lake)}
    assert found == {2: [("wrong_type", "revenue")], 3: [("wrong_type", "revenue")], 4: [("invalid_encoding", None)]}
    messages = {row: reasons[0][2] for _, row, _, reasons in quarantine(spark, lake)}
    # Spark hands the bare NaN token over as its JSON text.
    assert messages[2] == "value '\"NaN\"' is not a valid number"
    assert messages[3] == "value 'Infinity' is not a valid number"
    assert messages[4].startswith("record holds bytes that are not valid UTF-8 (the first shows as U+FFFD at "
                                  "character ")
    assert rows(spark, lake, "staging/web_events", "event_id", "revenue") == [("w1", 12.5), ("w6", None)]


def test_blocked_identity_value_is_dropped_not_the_record(spark: SparkSession, example: Workspace, lake: str,
                                                           tmp_path: Path) -> None:
    land(tmp_path, "web", D1, "web.jsonl",
         hit("w1", crm_id="anonymous")  # a valid cookie with a blocked crm id: the hit stays, without the crm id
         + hit("w2", ecid="anonymous", crm_id="C7")  # the cookie is blocked, the crm id still identifies the hit
         + hit("w3", ecid="null"))  # nothing valid remains: quarantined
    ctx = context(tmp_path, lake, D1)
    ws = with_rejected_share(example, 1.0)
    metrics = validate.run(spark, ws, ctx, "web_events")
    assert rows(spark, lake, "staging/web_events", "event_id", "ecid", "crm_id") == [
        ("w1", E1, None), ("w2", None, "C7")]
    # "null" is blocked, and no cookie id either (the namespace's pattern is 38 digits): both reasons are given.
    assert [(row, [(c, f) for c, f, _ in reasons]) for _, row, _, reasons in quarantine(spark, lake)] == [
        (3, [("bad_identity_format", "ecid"), ("blocked_identity", "ecid")])]
    assert (metrics["identities_dropped.blocked_identity"], metrics["identities_dropped.bad_identity_format"]) == (2, 1)
    assert ledger(spark, lake) == [("web_events", D1, "web.jsonl", 3, 2, 1, "staged", 3)]

    # A profile record is stored under its primary identity: a blocked one quarantines the record.
    land(tmp_path, "crm", D1, "crm.csv", CRM_HEADER + "anonymous,ann@example.com,,Ann,A,,FR,Paris,true,"
         "2024-03-01T08:00:00Z\nC2,invalid,,Bob,B,,FR,Lyon,true,2024-03-01T08:00:00Z\n")
    validate.run(spark, ws, ctx, "crm_profiles")
    crm = [(row, [(c, f) for c, f, _ in reasons]) for name, row, _, reasons in quarantine(spark, lake)
           if name == "crm.csv"]
    # C2's e-mail "invalid" is not an e-mail (a bad format keeps the record out), and blocked as well.
    assert crm == [(2, [("blocked_identity", "crm_id")]), (3, [("bad_format", "email"), ("blocked_identity", "email")])]


def test_rerun_after_fixing_a_file_keeps_nothing_of_the_bad_one(spark: SparkSession, example: Workspace, lake: str,
                                                                tmp_path: Path) -> None:
    # Day 1: a CRM record for C1 and C2, web hits w1-w3. Day 2: a newer C1.
    land(tmp_path, "crm", D1, "crm.csv", CRM_HEADER + "C1,old@example.com,,Ann,A,,FR,Paris,true,2024-03-01T08:00:00Z\n")
    land(tmp_path, "crm", D2, "crm.csv", CRM_HEADER + "C1,ann@example.com,,Ann,A,,FR,Paris,true,2024-03-02T08:00:00Z\n")
    bad = land(tmp_path, "crm", D1, "crm_extra.csv",
               CRM_HEADER + "C2,bob@example.com,,Bob,B,,FR,Lyon,true,2024-03-01T08:00:00Z\n"
               "C1,wrong@example.com,,Ann,A,,FR,Paris,true,2024-03-01T09:00:00Z\n")
    web_bad = land(tmp_path, "web", D1, "web.jsonl", hit("w1") + hit("w2") + hit("w3"))
    for day in (D1, D2):
        ctx = context(tmp_path, lake, day)
        for dataset in ("crm_profiles", "web_events"):
            validate.run(spark, example, ctx, dataset)
            ingest.run(spark, example, ctx, dataset)
    assert rows(spark, lake, "datasets/crm_profiles", "crm_id", "email", "_batch_date") == [
        ("C1", "ann@example.com", D2), ("C2", "bob@example.com", D1)]

    # The extra CRM file was a mistake and w2 must not exist: day 1 is re-run with the fixed files.
    bad.unlink()
    web_bad.write_text(hit("w1") + hit("w3"), encoding="utf-8")
    ctx = context(tmp_path, lake, D1)
    for dataset in ("crm_profiles", "web_events"):
        validate.run(spark, example, ctx, dataset)
        metrics = ingest.run(spark, example, ctx, dataset)
    assert metrics["rows_deleted"] == 1
    assert rows(spark, lake, "datasets/crm_profiles", "crm_id", "email", "_batch_date") == [
        ("C1", "ann@example.com", D2)]
    assert rows(spark, lake, "datasets/web_events", "event_id", "_batch_date") == [("w1", D1), ("w3", D1)]

    # Re-running day 2 changes nothing; re-running day 1 once more changes nothing either.
    for day in (D2, D1):
        for dataset in ("crm_profiles", "web_events"):
            validate.run(spark, example, context(tmp_path, lake, day), dataset)
            ingest.run(spark, example, context(tmp_path, lake, day), dataset)
    assert rows(spark, lake, "datasets/crm_profiles", "crm_id", "email", "_batch_date") == [
        ("C1", "ann@example.com", D2)]
    assert rows(spark, lake, "datasets/web_events", "event_id", "_batch_date") == [("w1", D1), ("w3", D1)]


def test_a_file_whose_ingestion_failed_is_loaded_when_delivered_again(spark: SparkSession, example: Workspace,
                                                                      lake: str, tmp_path: Path) -> None:
    content = hit("w1") + hit("w2")
    land(tmp_path, "web", D1, "web.jsonl", content)
    validate.run(spark, example, context(tmp_path, lake, D1), "web_events")  # ingest of day 1 never happens
    land(tmp_path, "web", D2, "web_again.jsonl", content)
    ctx2 = context(tmp_path, lake, D2)
    assert validate.run(spark, example, ctx2, "web_events")["rows_valid"] == 2  # not a duplicate file
    ingest.run(spark, example, ctx2, "web_events")
    assert rows(spark, lake, "datasets/web_events", "event_id", "_batch_date") == [("w1", D2), ("w2", D2)]
    assert [r[1:7] for r in ledger(spark, lake)] == [(D1, "web.jsonl", 2, 2, 0, "staged"),
                                                     (D2, "web_again.jsonl", 2, 2, 0, "ingested")]
    # Now ingested on day 2, the same content landed on a third day is a duplicate file.
    land(tmp_path, "web", D2 + dt.timedelta(days=1), "web_third.jsonl", content)
    third = validate.run(spark, example, context(tmp_path, lake, D2 + dt.timedelta(days=1)), "web_events")
    assert (third["rows_read"], third["rows_quarantined"]) == (1, 1)


def test_a_step_killed_between_commits_blocks_the_next_one_until_it_is_re_run(
        spark: SparkSession, example: Workspace, lake: str, tmp_path: Path, repo_root: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    land(tmp_path, "web", D1, "web.jsonl", hit("w1") + hit("w2"))
    workspace = str(repo_root / "examples" / "retail")
    args = ["--run-date", D1.isoformat(), "--run-id", "attempt-1", "--workspace", workspace,
            "--lake", lake, "--landing", str(tmp_path / "landing"), "--exports", str(tmp_path / "exports"),
            "--dataset", "web_events"]

    class Killed(BaseException):
        """Stands for SIGKILL: nothing after it runs, no except clause catches it."""

    calls: list[str] = []

    def dies_before_staging(df: object, path: str, *rest: object, **kw: object) -> None:
        calls.append(path)
        if path.endswith("/staging/web_events"):
            raise Killed
        replace_slice(df, path, *rest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(validate, "replace_slice", dies_before_staging)
    with pytest.raises(Killed):
        validate.main(args)
    # The Spark writes of validate, in order: killed after the quarantine (and the delta-rs commits of its summary
    # and the batch ledger), before the staging slice.
    assert [str(Path(p).relative_to(lake)) for p in calls] == ["quarantine", "staging/web_events"]
    assert rows(spark, lake, "step_runs", "step", "scope", "status") == [("validate", "web_events", "started")]

    with caplog.at_level("ERROR"), pytest.raises(SystemExit) as refused:
        ingest.main(args)
    assert refused.value.code == job.EXIT_DETERMINISTIC
    assert ("ingest[web_events] cannot start: validate[web_events] started for 2024-03-01 but did not finish (its "
            "tables may be half-written). Run (or clear and re-run) those tasks first.") in caplog.text

    monkeypatch.setattr(validate, "replace_slice", replace_slice)
    validate.main(args)
    ingest.main(args)
    assert rows(spark, lake, "step_runs", "step", "scope", "status") == [
        ("ingest", "web_events", "committed"), ("validate", "web_events", "committed")]
    assert rows(spark, lake, "datasets/web_events", "event_id") == [("w1",), ("w2",)]
