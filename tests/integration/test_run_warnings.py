"""Warnings on the alert channels, from the lake to a real SMTP server on loopback: an audience whose size jumped
(the audience gate, jobs/check_quality.py, run for real) and a dataset that quarantined far more than usual
(its batch_ledger history). The run goes on; the mail names the audience or dataset, the numbers, the threshold."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from cdp_provider.operators.spark_job import CdpSparkJobOperator, read_job_output
from pyspark.sql import SparkSession
from servers.smtp import SmtpServer, smtp_server

from cdp.lake import AUDIENCE_MEMBERSHIP, BATCH_LEDGER, PROFILES, Lake
from cdp.monitoring.warnings import quarantine_warnings
from cdp.monitoring.warnings import report as report_warnings
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.spark_connect import free_port
from cdp.workspace.loader import load_workspace
from jobs import check_quality

D = dt.date(2026, 11, 27)
PASSWORD = "smtp-s3cret-pw"
LOG_URL = "http://airflow.example.com:8080/dags/cdp_daily/runs/r1/tasks/check_audiences?try_number=1"
NOTE = "<p>A warning: the run goes on. The numbers come from the run&#x27;s tables; this message holds no record.</p>"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server("cdp-alerts", PASSWORD) as server:
        yield server


def smtp_connection(port: int) -> str:
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "login": "cdp-alerts",
                       "password": PASSWORD,
                       "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "cdp@example.com"}})


@pytest.fixture
def workspace(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp: SmtpServer) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", folder)
    config = folder / "workspace.yaml"
    config.write_text(config.read_text(encoding="utf-8")
                      + "alerts:\n  email:\n    connection: cdp_alerts_smtp\n    to: [data-team@example.com]\n",
                      encoding="utf-8")
    monkeypatch.setenv("CDP_WORKSPACE", str(folder))
    monkeypatch.setenv("AIRFLOW_CONN_CDP_ALERTS_SMTP", smtp_connection(smtp.port))
    return folder


def context(task_id: str) -> dict[str, Any]:
    # The task instance's attributes the alert reads (a real RuntimeTaskInstance needs a running task).
    ti = SimpleNamespace(task_id=task_id, rendered_map_index=None, map_index=-1, dag_id="cdp_daily", run_id="r1",
                         try_number=1, log_url=LOG_URL.replace("check_audiences", task_id))
    return {"ti": ti, "data_interval_start": pendulum.datetime(2026, 11, 27, tz="UTC")}


def facts_html(facts: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th align=\"left\">{label}</th><td>{value}</td></tr>" for label, value in facts)


def test_an_audience_size_jump_is_mailed_and_the_gate_passes(
        spark: SparkSession, lake: str, tmp_path: Path, workspace: Path, smtp: SmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lake_ = Lake(lake)
    previous = D - dt.timedelta(days=1)
    assert AUDIENCE_MEMBERSHIP.schema is not None
    stamp = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    # gold_members: 2 members, then 5 (+150%, over the default 50%); cart_abandoners: 4, then 3 (-25%).
    rows = ([(previous, "gold_members", f"p{i}", "realized", stamp, previous, None, None) for i in range(2)]
            + [(previous, "cart_abandoners", f"p{i}", "realized", stamp, previous, None, None) for i in range(4)]
            + [(D, "gold_members", f"p{i}", "existing" if i < 2 else "realized", stamp, previous, None, None)
               for i in range(5)]
            + [(D, "cart_abandoners", f"p{i}", "existing", stamp, previous, None, None) for i in range(3)]
            + [(D, "cart_abandoners", "p3", "exited", stamp, D, "not_qualified", None)])
    spark.createDataFrame(rows, AUDIENCE_MEMBERSHIP.schema).write.format("delta").partitionBy("run_date").save(
        lake_.path(AUDIENCE_MEMBERSHIP))
    profiles = [(day, f"p{i}") for day in (previous, D) for i in range(5)]
    spark.createDataFrame(profiles, "run_date date, profile_id string").write.format("delta").partitionBy(
        "run_date").save(lake_.path(PROFILES))

    output = tmp_path / "output.json"
    monkeypatch.setenv("CDP_JOB_OUTPUT_FILE", str(output))
    ws = load_workspace(str(workspace))
    ctx = RunContext(D, "r1", Settings(workspace=str(workspace), lake=lake, landing=str(tmp_path / "landing"),
                                       exports=str(tmp_path / "exports")))
    outcomes = check_quality.run(spark, ws, ctx, "audiences")  # does not raise: a size jump is a warning
    assert [o.suite for o in outcomes if not o.success] == ["audience_size_change"]

    task = CdpSparkJobOperator(task_id="check_audiences", job="check_quality", extra_args=["--stage", "audiences"])
    task.publish_output(context("check_audiences"), read_job_output(str(output)))

    [mail] = smtp.messages
    assert (mail.mail_from, mail.rcpt_tos) == ("cdp@example.com", ["data-team@example.com"])
    subject = "[cdp] cdp_daily: warning for run date 2026-11-27: audience gold_members changed size by +150.0%"
    assert mail.message["Subject"] == subject
    body = mail.message.get_body(("html",))
    assert body is not None
    assert body.get_content() == (
        f"<h3>{subject}</h3><table>" + facts_html([
            ("DAG", "cdp_daily"), ("Task", "check_audiences"), ("Run date", "2026-11-27"), ("Run", "r1"),
            ("Audience", "gold_members"), ("Size", "2 on 2026-11-26, 5 on 2026-11-27"), ("Change", "+150.0%"),
            ("Threshold", "50.0% (guardrails.audience_size_change_warning_share)")])
        + f"</table><p><a href=\"{LOG_URL}\">Open the task log in Airflow</a>: {LOG_URL}</p>{NOTE}")
    # No profile id (nor anything else from a record) leaves in the mail.
    assert not any(f"p{i}" in mail.message.as_string() for i in range(5))


def test_a_quarantine_rate_far_over_the_usual_is_mailed(spark: SparkSession, lake: str, tmp_path: Path,
                                                       workspace: Path, smtp: SmtpServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lake_ = Lake(lake)

    def day(n: int) -> dt.date:
        return D - dt.timedelta(days=n)

    # crm_profiles: 1 bad record in 100 on four days, then 20 in 100 (two files); loyalty_members: 1% every day;
    # web_events: only two days before (too short a history to judge).
    rows = ([("crm_profiles", day(n), f"crm_{n}.csv", 100, 99, 1, "ingested") for n in range(1, 5)]
            + [("crm_profiles", D, "crm_a.csv", 60, 45, 15, "ingested"),
               ("crm_profiles", D, "crm_b.csv", 40, 35, 5, "ingested")]
            + [("loyalty_members", day(n), "l.parquet", 100, 99, 1, "ingested") for n in range(0, 5)]
            + [("web_events", day(n), "w.jsonl", 10, 5, 5, "ingested") for n in range(1, 3)]
            + [("web_events", D, "w.jsonl", 10, 1, 9, "ingested"),
               # landed after the run date: not part of the run date's history
               ("crm_profiles", D + dt.timedelta(days=1), "crm_c.csv", 10, 0, 10, "staged")])
    spark.createDataFrame([(*r, "run", None, None) for r in rows], BATCH_LEDGER.schema).write.format("delta").save(
        lake_.path(BATCH_LEDGER))
    output = tmp_path / "output.json"
    monkeypatch.setenv("CDP_JOB_OUTPUT_FILE", str(output))
    ws = load_workspace(str(workspace))
    report_warnings(quarantine_warnings(check_quality.quarantine_history(spark, lake_, D), D, ws.config.guardrails))

    task = CdpSparkJobOperator(task_id="check_ingest", job="check_quality", extra_args=["--stage", "ingest"])
    task.publish_output(context("check_ingest"), read_job_output(str(output)))
    [mail] = smtp.messages
    subject = "[cdp] cdp_daily: warning for run date 2026-11-27: dataset crm_profiles quarantined 20.0% of its records"
    assert mail.message["Subject"] == subject
    body = mail.message.get_body(("html",))
    assert body is not None
    link = LOG_URL.replace("check_audiences", "check_ingest")
    assert body.get_content() == (
        f"<h3>{subject}</h3><table>" + facts_html([
            ("DAG", "cdp_daily"), ("Task", "check_ingest"), ("Run date", "2026-11-27"), ("Run", "r1"),
            ("Dataset", "crm_profiles"), ("Quarantined", "20 of 100 records (20.0%)"),
            ("Median of the previous 4 run dates", "1.0%"),
            ("Threshold", "3x the median and over 1.0% (guardrails.quarantine_warning_factor, "
                          "quarantine_warning_min_share)")])
        + f"</table><p><a href=\"{link}\">Open the task log in Airflow</a>: {link}</p>{NOTE}")


def test_a_channel_that_is_down_does_not_fail_the_task(workspace: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from cdp_provider.alerts import send_warnings

    down = json.loads(smtp_connection(free_port()))  # nothing listens there; one try, not the hook's 5
    down["extra"].update({"retry_limit": 0, "timeout": 5})
    monkeypatch.setenv("AIRFLOW_CONN_CDP_ALERTS_SMTP", json.dumps(down))
    warning = {"run_date": "2026-11-27", "title": "audience gold_members changed size by +150.0%",
               "facts": [["Audience", "gold_members"]]}
    assert send_warnings(context("check_audiences"), [warning]) == 0
    assert ("warning alert '[cdp] cdp_daily: warning for run date 2026-11-27: audience gold_members changed size by "
            "+150.0%' not sent on every channel") in caplog.text
