"""Daily lake maintenance: retention, OPTIMIZE and VACUUM. See ``doc_md`` below."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable
from cdp_provider.alerts import WorkspaceAlertNotifier
from cdp_provider.operators.spark_job import CdpSparkJobOperator

DOC = """
# cdp_maintenance — the lake's daily upkeep

One run per day (03:00 UTC, after the daily activation has usually finished) runs `jobs/maintenance.py`
for the run date D (`{{ ds }}`, the data interval start), with the retention of the workspace's
`maintenance:` block (defaults in brackets):

| what | retention |
|---|---|
| `quarantine` rows (`batch_date`) | `quarantine_days` [90] |
| `run_metrics`, `quality_results`, `destination_metrics`, `delivery_failures` (`run_date`) | `metrics_days` [400] |
| `batch_ledger`, `export_ledger`, `delivery_ledger` | `ledger_days` [400] |
| exited rows of `audience_membership` (`status_since`) | `exited_membership_days` [30] |
| landed `{date}` folders of local datasets | `landing_days` [30]; null keeps them |
| every Delta table: `OPTIMIZE`, then `VACUUM ... RETAIN` | `vacuum_retention_hours` [168 = 7 days, the minimum] |

A row older than D minus its retention is deleted, so re-running a day deletes nothing more. After
VACUUM, time travel reaches back `vacuum_retention_hours` and no further. A failure alerts on the
workspace's `alerts:` channels; it is retried (`CDP_TASK_RETRIES`) like the daily run's steps.
"""

with DAG(
    dag_id="cdp_maintenance",
    description="Retention of quarantine, metrics, ledgers, exited memberships and landed files; OPTIMIZE, VACUUM",
    doc_md=DOC,
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # VACUUM and OPTIMIZE of one table must not run twice at once.
    max_active_runs=1,
    default_args={
        "owner": "cdp",
        "retries": int(os.environ.get("CDP_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=5),
        "on_failure_callback": WorkspaceAlertNotifier(),
    },
    tags=["cdp", "maintenance"],
) as dag:
    CdpSparkJobOperator(task_id="maintenance", job="maintenance")
