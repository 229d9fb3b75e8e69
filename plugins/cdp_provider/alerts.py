"""Alerts: a failed task, a late run and a run's warnings, sent on the channels of the workspace's ``alerts:`` block.

The channels are the providers' notifiers: e-mail through the SMTP provider's ``SmtpNotifier``, Slack through
the Slack provider's ``SlackWebhookNotifier``; each names an Airflow connection, which holds the credentials
(never the workspace). The workspace is read when an alert is sent, on the worker or the triggerer, never when
the DAG file is parsed, so this module imports only what a DAG file may import at parse time.

What an alert holds: the DAG, the task, the run date, the run id, the try and the link to the task's log in
the Airflow UI. Never the error's text: it may quote a record (PII); the log behind the link has it.

A warning (a dataset that quarantined much more than usual, an audience whose size jumped: see
:mod:`cdp.monitoring.warnings`) is reported by the job that found it and sent by its task, which goes on: it
names the dataset or audience, the numbers and the threshold, never a record.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from cdp.workspace.models import Alerts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One message, rendered for every channel."""

    subject: str
    facts: tuple[tuple[str, str], ...]
    link: str | None
    note: str = "The error is in the task log; this message holds no data from the run."

    def text(self) -> str:
        """Plain text (Slack): the subject, one line per fact, the link."""
        lines = [self.subject, *(f"{label}: {value}" for label, value in self.facts)]
        if self.link:
            lines.append(f"Log: {self.link}")
        return "\n".join(lines)

    def html(self) -> str:
        """HTML (e-mail): the subject as a heading, the facts as a table, the link."""
        rows = "".join(f"<tr><th align=\"left\">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                       for label, value in self.facts)
        link = (f"<p><a href=\"{html.escape(self.link, quote=True)}\">Open the task log in Airflow</a>: "
                f"{html.escape(self.link)}</p>" if self.link else "")
        return f"<h3>{html.escape(self.subject)}</h3><table>{rows}</table>{link}<p>{html.escape(self.note)}</p>"


def _run_date(value: Any) -> str:
    """The run date (the data interval start's day) of a datetime or an ISO string."""
    if value is None:
        return "unknown"
    if hasattr(value, "date"):
        return str(value.date().isoformat())
    return str(value)[:10]


def _task_label(ti: Any) -> str:
    """The task's id, with its map index label (or index) for a mapped task: ``export[marketing_landing]``."""
    task = str(ti.task_id)
    label = getattr(ti, "rendered_map_index", None)
    map_index = getattr(ti, "map_index", -1)
    if label or (map_index is not None and map_index >= 0):
        task = f"{task}[{label or map_index}]"
    return task


def failure_alert(context: Mapping[str, Any]) -> Alert:
    """The alert for a failed task, from its Airflow context."""
    ti = context["ti"]
    task = _task_label(ti)
    dag_id = str(ti.dag_id)
    run_date = _run_date(context.get("data_interval_start"))
    return Alert(subject=f"[cdp] {dag_id}: task {task} failed for run date {run_date}",
                 facts=(("DAG", dag_id), ("Task", task), ("Run date", run_date), ("Run", str(ti.run_id)),
                        ("Try", str(ti.try_number))),
                 link=str(ti.log_url))


def late_run_alert(dag_run: Mapping[str, Any], deadline: Mapping[str, Any], base_url: str) -> Alert:
    """The alert for a run that has not finished by its deadline (the deadline callback's simple context)."""
    dag_id = str(dag_run.get("dag_id"))
    run_id = str(dag_run.get("dag_run_id") or dag_run.get("run_id"))
    run_date = _run_date(dag_run.get("data_interval_start"))
    return Alert(subject=f"[cdp] {dag_id}: the run for run date {run_date} is late",
                 facts=(("DAG", dag_id), ("Run date", run_date), ("Run", run_id),
                        ("State", str(dag_run.get("state"))), ("Queued at", str(dag_run.get("queued_at"))),
                        ("Deadline", str(deadline.get("deadline_time")))),
                 link=f"{base_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}")


WARNING_NOTE = "A warning: the run goes on. The numbers come from the run's tables; this message holds no record."


def warning_alert(context: Mapping[str, Any], warning: Mapping[str, Any]) -> Alert:
    """The alert for one warning a job reported (``title``, ``facts``, ``run_date``), from its task's context."""
    ti = context["ti"]
    dag_id = str(ti.dag_id)
    task = _task_label(ti)
    run_date = str(warning.get("run_date") or _run_date(context.get("data_interval_start")))
    facts = tuple((str(label), str(value)) for label, value in warning.get("facts", []))
    return Alert(subject=f"[cdp] {dag_id}: warning for run date {run_date}: {warning['title']}",
                 facts=(("DAG", dag_id), ("Task", task), ("Run date", run_date), ("Run", str(ti.run_id)), *facts),
                 link=str(ti.log_url), note=WARNING_NOTE)


def send_warnings(context: Mapping[str, Any], warnings: Sequence[Mapping[str, Any]]) -> int:
    """Send one alert per warning on the workspace's channels; return how many went out.

    Never raises: a warning must not fail the task that found it, nor a channel that is down the run (the
    warning is in the task log and, for the quality gates, in ``quality_results``).
    """
    alerts = workspace_alerts()
    if alerts is None or (alerts.email is None and alerts.slack is None):
        log.info("%d warning(s), no alert channel in the workspace: see the log above", len(warnings))
        return 0
    sent = 0
    for warning in warnings:
        alert = warning_alert(context, warning)
        try:
            channels = send_alert(alerts, alert)
        except Exception as exc:
            log.error("warning alert %r not sent on every channel (%s); the run goes on", alert.subject,
                      type(exc).__name__)
            continue
        sent += 1
        log.info("warning alert %r sent to %s", alert.subject, ", ".join(channels))
    return sent


def send_alert(alerts: Alerts, alert: Alert) -> list[str]:
    """Send ``alert`` on every channel of ``alerts``; return the channels it went to (``email``, ``slack``).

    A channel that fails is logged and the others are still tried; the failure is raised afterwards, so
    Airflow records that the callback failed.
    """
    channels: list[tuple[str, str, Any]] = []
    if alerts.email is not None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        channels.append(("email", alerts.email.connection, SmtpNotifier(
            to=list(alerts.email.to), from_email=alerts.email.from_email, smtp_conn_id=alerts.email.connection,
            subject=alert.subject, html_content=alert.html())))
    if alerts.slack is not None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        channels.append(("slack", alerts.slack.connection,
                         SlackWebhookNotifier(slack_webhook_conn_id=alerts.slack.connection, text=alert.text())))
    sent: list[str] = []
    errors: list[Exception] = []
    for channel, connection, notifier in channels:
        try:
            # notify(), not __call__: the texts are final, nothing in them is a Jinja template to render.
            notifier.notify({})
            sent.append(channel)
        except Exception as exc:
            log.error("alert (%s) through connection %s failed: %s", channel, connection, type(exc).__name__)
            errors.append(exc)
    if errors:
        raise errors[0]
    return sent


def workspace_alerts() -> Alerts | None:
    """The ``alerts:`` block of the workspace of ``CDP_WORKSPACE``, or None (logged) when it cannot be loaded."""
    from cdp.errors import WorkspaceError
    from cdp.settings import Settings
    from cdp.workspace.loader import load_workspace

    try:
        return load_workspace(Settings.from_env().workspace).config.alerts
    except WorkspaceError as exc:
        log.error("no alert sent: the workspace cannot be loaded (%d problem(s), see the task log)", len(exc.problems))
        return None


class WorkspaceAlertNotifier(BaseNotifier):
    """``on_failure_callback`` of the DAGs: the failed task, on the workspace's alert channels."""

    template_fields = ()

    def notify(self, context: Any) -> None:
        """Send the failure alert (nothing when the workspace has no ``alerts:`` channel)."""
        alerts = workspace_alerts()
        if alerts is None or (alerts.email is None and alerts.slack is None):
            return
        alert = failure_alert(context)
        log.info("failure alert for %s sent to %s", alert.facts[1][1], ", ".join(send_alert(alerts, alert)))


async def notify_late_run(context: dict[str, Any]) -> None:
    """Deadline alert callback (run by the triggerer): the late run, on the workspace's alert channels."""
    from airflow.sdk.configuration import conf

    alerts = workspace_alerts()
    if alerts is None or (alerts.email is None and alerts.slack is None):
        return
    base_url = str(conf.get("api", "base_url", fallback="http://localhost:8080/"))
    alert = late_run_alert(context.get("dag_run") or {}, context.get("deadline") or {}, base_url)
    # The notifiers' hooks block: off the triggerer's event loop.
    sent = await asyncio.to_thread(send_alert, alerts, alert)
    log.info("late-run alert for %s sent to %s", alert.facts[2][1], ", ".join(sent))
