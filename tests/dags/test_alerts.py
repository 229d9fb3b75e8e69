"""Alerts on the workspace's channels: a failed task of cdp_daily sends exactly one e-mail (a real SMTP server on
loopback), a late run sends one on e-mail and Slack (a real HTTP server on loopback stands for Slack's webhook),
and neither holds a secret or the error's text."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.deadline import DagRunQueuedAtDeadline
from cdp_provider.alerts import notify_late_run
from servers.smtp import SmtpServer, smtp_server

from cdp.errors import WorkspaceError
from cdp.spark_connect import free_port
from cdp.workspace.loader import load_workspace

SMTP_PASSWORD = "smtp-s3cret-pw"
WEBHOOK_TOKEN = "T0000/B0000/slack-s3cret-token"
ALERTS = """
alerts:
  email:
    connection: cdp_alerts_smtp
    to: [data-team@example.com, oncall@example.com]
  slack:
    connection: cdp_alerts_slack
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server("cdp-alerts", SMTP_PASSWORD) as server:
        yield server


class _Webhook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        pass  # quiet: the test reads what it received


@pytest.fixture
def slack_webhook() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """A real HTTP server on loopback answering like Slack's incoming webhook (200 "ok"), keeping each post."""
    _Webhook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    os.environ["AIRFLOW_CONN_CDP_ALERTS_SLACK"] = json.dumps({
        "conn_type": "slackincomingwebhook", "host": f"http://127.0.0.1:{server.server_port}",
        "password": WEBHOOK_TOKEN})
    try:
        yield _Webhook.received
    finally:
        del os.environ["AIRFLOW_CONN_CDP_ALERTS_SLACK"]
        server.shutdown()
        server.server_close()


def alert_workspace(repo_root: Path, folder: Path, alerts: str = ALERTS) -> Path:
    """The example workspace with an ``alerts:`` block."""
    workspace = folder / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    config = workspace / "workspace.yaml"
    config.write_text(config.read_text(encoding="utf-8") + alerts, encoding="utf-8")
    return workspace


def smtp_connection(port: int) -> str:
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "login": "cdp-alerts",
                       "password": SMTP_PASSWORD,
                       "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "cdp@example.com"}})


def test_a_failing_task_sends_exactly_one_mail(tmp_path: Path, repo_root: Path, smtp: SmtpServer) -> None:
    # A run triggered with an unknown destination: list_destinations fails at once (no retry), every other task is
    # upstream_failed. A real `airflow dags test`, on a copy of the setup's migrated metadata database.
    shutil.copy(repo_root / ".airflow" / "airflow.db", tmp_path / "airflow.db")
    workspace = alert_workspace(repo_root, tmp_path, ALERTS.replace("  slack:\n    connection: cdp_alerts_slack\n", ""))
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
           "AIRFLOW__CORE__DAGS_FOLDER": str(repo_root / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo_root / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__API__BASE_URL": "http://airflow.example.com:8080",
           "AIRFLOW_CONN_CDP_ALERTS_SMTP": smtp_connection(smtp.port),
           # No Spark server: no Spark job may run (each would fail and alert once more).
           "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1",
                                                     "port": free_port()}),
           "CDP_TASK_RETRIES": "0",
           "CDP_WORKSPACE": str(workspace), "CDP_LAKE": str(tmp_path / "lake"),
           "CDP_LANDING": str(tmp_path / "landing"), "CDP_EXPORTS": str(tmp_path / "exports")}
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", "cdp_daily",
                             "2026-11-28T00:00:00+00:00", "--conf", json.dumps({"destinations": ["nowhere"]})],
                            env=env, capture_output=True, text=True, check=False, timeout=240)
    output = result.stdout + result.stderr
    assert "Param destinations: unknown destination(s) 'nowhere'" in output, output[-3000:]

    assert len(smtp.messages) == 1, output[-3000:]
    received = smtp.messages[0]
    assert (received.mail_from, received.rcpt_tos) == ("cdp@example.com",
                                                       ["data-team@example.com", "oncall@example.com"])
    assert smtp.logins == ["cdp-alerts"]
    message = received.message
    assert message["Subject"] == "[cdp] cdp_daily: task list_destinations failed for run date 2026-11-27"
    body = message.get_body(("html",))
    assert body is not None
    html = body.get_content()
    run_id = re.search(r"<th align=\"left\">Run</th><td>([^<]+)</td>", html)
    assert run_id is not None, html
    link = (f"http://airflow.example.com:8080/dags/cdp_daily/runs/{quote(run_id.group(1))}"
            "/tasks/list_destinations?try_number=1")
    assert html == (
        "<h3>[cdp] cdp_daily: task list_destinations failed for run date 2026-11-27</h3><table>"
        "<tr><th align=\"left\">DAG</th><td>cdp_daily</td></tr>"
        "<tr><th align=\"left\">Task</th><td>list_destinations</td></tr>"
        "<tr><th align=\"left\">Run date</th><td>2026-11-27</td></tr>"
        f"<tr><th align=\"left\">Run</th><td>{run_id.group(1)}</td></tr>"
        "<tr><th align=\"left\">Try</th><td>1</td></tr></table>"
        f"<p><a href=\"{link}\">Open the task log in Airflow</a>: {link}</p>"
        "<p>The error is in the task log; this message holds no data from the run.</p>")
    # Neither the credential nor the error's text (which may quote a record) leaves in the mail or the log.
    raw = message.as_string()
    assert SMTP_PASSWORD not in raw and SMTP_PASSWORD not in output
    assert "nowhere" not in raw


def test_a_late_run_alerts_by_email_and_slack(tmp_path: Path, repo_root: Path, smtp: SmtpServer,
                                              slack_webhook: list[tuple[str, dict[str, Any]]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_WORKSPACE", str(alert_workspace(repo_root, tmp_path)))
    monkeypatch.setenv("AIRFLOW_CONN_CDP_ALERTS_SMTP", smtp_connection(smtp.port))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example.com:8080")
    # The simple context the scheduler gives a deadline callback (airflow.models.deadline.Deadline.handle_miss).
    context = {"dag_run": {"dag_id": "cdp_daily", "dag_run_id": "scheduled__2026-11-27T00:00:00+00:00",
                           "data_interval_start": "2026-11-27T00:00:00Z", "state": "running",
                           "queued_at": "2026-11-28T00:00:05Z"},
               "deadline": {"id": "0199", "deadline_time": "2026-11-28T06:00:05Z"}}
    asyncio.run(notify_late_run(context=context))

    assert len(smtp.messages) == 1
    assert smtp.messages[0].message["Subject"] == "[cdp] cdp_daily: the run for run date 2026-11-27 is late"
    link = "http://airflow.example.com:8080/dags/cdp_daily/runs/scheduled__2026-11-27T00%3A00%3A00%2B00%3A00"
    assert slack_webhook == [("/T0000/B0000/slack-s3cret-token", {"text": (
        "[cdp] cdp_daily: the run for run date 2026-11-27 is late\n"
        "DAG: cdp_daily\nRun date: 2026-11-27\nRun: scheduled__2026-11-27T00:00:00+00:00\nState: running\n"
        "Queued at: 2026-11-28T00:00:05Z\nDeadline: 2026-11-28T06:00:05Z\n"
        f"Log: {link}")})]
    assert WEBHOOK_TOKEN not in smtp.messages[0].message.as_string()


def test_the_dag_declares_the_late_run_deadline_and_the_failure_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_LATE_RUN_HOURS", "6")
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags")).dags["cdp_daily"]
    [deadline] = dag.deadline or []
    assert isinstance(deadline.reference, DagRunQueuedAtDeadline)
    assert deadline.interval.total_seconds() == 6 * 3600
    assert deadline.callback.path == "cdp_provider.alerts.notify_late_run"
    assert all(type(t.on_failure_callback[0]).__name__ == "WorkspaceAlertNotifier"  # type: ignore[index]
               for t in dag.tasks)


def test_no_deadline_unless_a_late_run_threshold_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # `airflow dags test` cannot finish a DAG that declares a deadline (Airflow 3.1): the demo and the e2e run without.
    monkeypatch.delenv("CDP_LATE_RUN_HOURS", raising=False)
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags")).dags["cdp_daily"]
    assert not dag.deadline


def test_a_bad_alerts_block_is_a_workspace_error(tmp_path: Path, repo_root: Path) -> None:
    workspace = alert_workspace(repo_root, tmp_path, ALERTS.replace("oncall@example.com", "oncall"))
    with pytest.raises(WorkspaceError) as failed:
        load_workspace(str(workspace))
    assert [str(p) for p in failed.value.problems] == [
        "workspace.yaml: alerts.email.to.1: String should match pattern "
        "'^[^@\\s<>,;]+@[^@\\s<>,;]+\\.[^@\\s<>,;]+$'"]


def test_a_mapped_task_is_named_by_its_map_index_label() -> None:
    from types import SimpleNamespace

    import pendulum
    from cdp_provider.alerts import failure_alert

    # The task instance's attributes the alert reads (a real RuntimeTaskInstance needs a running task).
    ti = SimpleNamespace(task_id="export", rendered_map_index="marketing_landing", map_index=3, dag_id="cdp_daily",
                         run_id="scheduled__2026-11-27T00:00:00+00:00", try_number=3,
                         log_url="http://localhost:8080/dags/cdp_daily/runs/x/tasks/export/mapped/3?try_number=3")
    alert = failure_alert({"ti": ti, "data_interval_start": pendulum.datetime(2026, 11, 27, tz="UTC")})
    assert alert.subject == "[cdp] cdp_daily: task export[marketing_landing] failed for run date 2026-11-27"
    assert alert.text() == (
        "[cdp] cdp_daily: task export[marketing_landing] failed for run date 2026-11-27\n"
        "DAG: cdp_daily\nTask: export[marketing_landing]\nRun date: 2026-11-27\n"
        "Run: scheduled__2026-11-27T00:00:00+00:00\nTry: 3\n"
        "Log: http://localhost:8080/dags/cdp_daily/runs/x/tasks/export/mapped/3?try_number=3")
