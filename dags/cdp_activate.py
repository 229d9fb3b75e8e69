"""One DAG per destination with a schedule of its own: ``cdp_activate__<destination>``. See ``DOC`` below."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task
from cdp_provider.alerts import WorkspaceAlertNotifier
from cdp_provider.assets import AUDIENCE_MEMBERSHIP
from cdp_provider.operators.spark_job import CdpSparkJobOperator

from cdp.settings import Settings
from cdp.workspace.cadence import AFTER_AUDIENCE_EVALUATION, CadenceSpec, cadence_destinations, dag_id, every_hours

DOC = """
# {dag_id} — destination `{destination}` on its own cadence (`schedule: {cadence}`)

Declared by `{file}` of the workspace; `cdp_daily` does not export this destination.

Scheduled on the asset `cdp_audience_membership`, which `evaluate_audiences` of `cdp_daily` updates each time it
commits a run date's membership snapshot{hours}.

Tasks, in order:

1. `membership`: the run date to activate, that of the newest triggering asset event (its `extra` holds
   `run_date` and `membership_version`), or of the newest event the asset ever had when the run was started by
   time or by hand; skipped while the asset has none.
2. `check_audiences`: the daily run's audience gate for that run date (Great Expectations); a failed gate
   activates nothing.
3. `export`: `jobs/export.py` for that run date, as `cdp_daily` runs it. Files and messages are delivered exactly
   once (export and delivery ledgers): a run that finds its snapshot delivered sends nothing, a run after an
   outage sends only what is missing.

Param `full_resync` (boolean): send every current member, whatever was delivered before (mode `resync`).
Failures alert on the workspace's `alerts:` channels.
"""


def _schedule(spec: CadenceSpec) -> Any:
    hours = every_hours(spec.cadence)
    if hours is None:
        return AUDIENCE_MEMBERSHIP
    # Every N hours from midnight UTC, and after every audience evaluation.
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(f"0 */{hours} * * *", timezone="UTC"),
                               assets=AUDIENCE_MEMBERSHIP)


# The run date the tasks work on is the one the `membership` task chose, not the DAG run's logical date.
RUN_DATE = "{{ ti.xcom_pull(task_ids='membership')['run_date'] }}"

for spec in cadence_destinations(Settings.from_env().workspace):
    hours = every_hours(spec.cadence)
    with DAG(
        dag_id=dag_id(spec.destination),
        description=f"Activate destination {spec.destination} ({spec.cadence})",
        doc_md=DOC.format(dag_id=dag_id(spec.destination), destination=spec.destination, cadence=spec.cadence,
                          file=spec.file, hours="" if spec.cadence == AFTER_AUDIENCE_EVALUATION else
                          f", and every {hours} hours from 00:00 UTC (`CronTriggerTimetable(\"0 */{hours} * * *\")`)"),
        schedule=_schedule(spec),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        # One run at a time per destination: its ledgers are written by one export at a time.
        max_active_runs=1,
        default_args={
            "owner": "cdp",
            "retries": int(os.environ.get("CDP_TASK_RETRIES", "2")),
            "retry_delay": pendulum.duration(minutes=2),
            "on_failure_callback": WorkspaceAlertNotifier(),
        },
        tags=["cdp", "activation", "cadence"],
        params={
            "full_resync": Param(
                False, type="boolean", title="Full resync",
                description="Send every current member of the destination's audiences this run, whatever was "
                "delivered before (an incremental destination starts over; recorded as mode resync)."),
        },
    ) as dag:

        @task(inlets=[AUDIENCE_MEMBERSHIP])
        def membership() -> dict[str, Any]:
            """The run date (and membership version) this run activates: see cdp_provider.cadence."""
            from airflow.sdk import get_current_context
            from cdp_provider.cadence import membership_to_activate

            return membership_to_activate(get_current_context())

        gate = CdpSparkJobOperator(task_id="check_audiences", job="check_quality", extra_args=["--stage", "audiences"],
                                   run_date=RUN_DATE, alert_warnings=False)  # cdp_daily's gate sent them
        export = CdpSparkJobOperator(task_id="export", job="export", destination=spec.destination, run_date=RUN_DATE,
                                     full_resync="{{ task.destination if params.full_resync else '' }}")
        membership() >> gate >> export
    globals()[dag.dag_id] = dag
