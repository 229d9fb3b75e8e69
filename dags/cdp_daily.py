"""The daily activation: landed files in, audiences out. See ``doc_md`` below."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.timetables.interval import CronDataIntervalTimetable
from cdp_provider.alerts import WorkspaceAlertNotifier, notify_late_run
from cdp_provider.assets import AUDIENCE_MEMBERSHIP
from cdp_provider.operators.spark_job import CdpSparkJobOperator

DOC = """
# cdp_daily — the daily activation

One run per day processes **one day of landed files**: the run's *data interval start*
(`{{ ds }}`) is the **run date**, the partition key of every write. The schedule is a
`CronDataIntervalTimetable` at 00:00 UTC: the run for 2026-11-27 starts once that day is over
(2026-11-28 00:00 UTC) and reads `landing/<dataset>/2026-11-27/`. A manual trigger processes the
last complete day; a backfill (`airflow backfill create --dag-id cdp_daily --from-date ... --to-date ...`)
re-runs past days, and every task replaces exactly its day's slice, so re-running is safe.

| step | task | what it does |
|---|---|---|
| 1 | `load_workspace` | loads and checks the workspace YAML; lists the datasets |
| 2 | `validate` (one per dataset) | checks landed files against the schema; bad records to `quarantine` |
| 3 | `ingest` (one per dataset) | MERGE into the dataset tables (profiles upserted, events deduplicated) |
| 4 | `check_ingest` | Great Expectations: files reconcile with ledger and quarantine; plausible volumes |
| 5 | `resolve_identities` → `check_identities` | identity graph, connected components, profile ids (incremental) |
| 6 | `build_profiles` → `check_profiles` | merged profile attributes and identity maps |
| 7 | `evaluate_audiences` → `check_audiences` | membership: realized / existing / exited |
| 8 | `export` (per destination), `check_exports` | files delivered exactly once (export ledger); counts reconcile |
| 9 | `report` | a summary of the run in the task log |

Deterministic failures (a workspace error, a rejected batch, a failed quality gate, a step whose
inputs are half-written) fail their task at once; other failures are retried (`CDP_TASK_RETRIES`).
Every Spark step records itself in `step_runs` (started, then committed) and refuses to start
unless the steps it reads from committed the run date.

Trigger Params (all optional): `audiences` and `destinations` choose which destinations export
(default all; every audience is evaluated anyway), `full_resync` sends chosen destinations every
current member, `full_identity_rebuild` recomputes every identity component, `dry_run` computes everything
and renders every export into `<lake>/previews/<run date>/<destination>/` (table `export_previews`) but
delivers nothing and changes no delivery ledger (the real run of the same day then delivers what it would
have). Names are checked against the workspace when the run starts (`list_destinations`): an unknown one
fails the run at once.

Identity resolution recomputes only the graph components touched since the previous run; trigger
with the param `full_identity_rebuild` to recompute every component (the result is the same).

Destinations with a `schedule:` of their own (every 3, 6, 8 or 12 hours, or after_audience_evaluation) are not
exported here: each is a DAG `cdp_activate__<destination>`, scheduled on the asset `cdp_audience_membership` that
`evaluate_audiences` updates (extra: `run_date`, `membership_version`).

Alerts: a task that fails for good, and a run not finished `CDP_LATE_RUN_HOURS` (when set; `make airflow`: 6) hours
after it was queued (a deadline alert), are sent on the channels of the workspace's `alerts:` block
(e-mail through an SMTP connection, Slack through an incoming-webhook connection).

Workspace, lake, landing and exports come from `CDP_WORKSPACE`, `CDP_LAKE`, `CDP_LANDING`,
`CDP_EXPORTS` on the worker; Spark's master from the `spark_default` connection.
"""

# Runs depend on the previous day's memberships (realized / existing / exited), so days run in order.
default_args = {
    "owner": "cdp",
    "retries": int(os.environ.get("CDP_TASK_RETRIES", "2")),
    "retry_delay": pendulum.duration(minutes=2),
    # A task that failed for good (no retry left, or a deterministic failure): one alert on the workspace's
    # `alerts:` channels, read when the alert is sent.
    "on_failure_callback": WorkspaceAlertNotifier(),
}
# A run not finished this many hours after it was queued is late (queued, not the logical date: a backfill of
# an old day is not late at once). Part of the DAG's definition, so read from the environment, not the workspace.
# Unset: no deadline. `airflow dags test` (make demo, make run, the e2e) fails to mark a successful run of a DAG
# that declares one (Airflow 3.1: it looks the deadline up by an id it never stored), so only deployments with a
# scheduler set it (`make airflow` sets 6).
try:
    LATE_RUN_HOURS = float(os.environ.get("CDP_LATE_RUN_HOURS") or 0)
except ValueError:
    raise ValueError(f"CDP_LATE_RUN_HOURS={os.environ['CDP_LATE_RUN_HOURS']!r} is not a number of hours "
                     "(e.g. 6, or unset for no late-run alert)") from None
LATE_RUN = [DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=dt.timedelta(hours=LATE_RUN_HOURS),
                          callback=AsyncCallback(notify_late_run), name="late_run")] if LATE_RUN_HOURS > 0 else None

with DAG(
    dag_id="cdp_daily",
    description="Validate, ingest, resolve identities, build profiles, evaluate audiences, export",
    doc_md=DOC,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    deadline=LATE_RUN,
    tags=["cdp", "daily", "activation"],
    params={
        "audiences": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            title="Audiences",
            description="Audience ids whose destinations this run exports to (empty: all). Every audience is still "
            "evaluated (statuses are relative to the previous day's complete snapshot); only destinations mapping "
            "one of these run their export. An id the workspace does not define fails the run at once.",
        ),
        "destinations": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            title="Destinations",
            description="Destination names to export to (empty: all). An unknown name fails the run at once.",
        ),
        "full_resync": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            title="Full resync",
            description="Destinations whose export sends every current member of their audiences this run, "
            "whatever was delivered before (an incremental destination starts over; recorded as mode resync).",
        ),
        "full_identity_rebuild": Param(
            False,
            type="boolean",
            title="Full identity rebuild",
            description="Recompute every identity graph component instead of only those touched since the "
            "previous run (same result; use after restoring the lake or to re-verify it).",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Compute everything and render every export into the lake's preview area "
            "(previews/<run date>/<destination>/: the files, or the messages, each destination would receive; "
            "counts in the table export_previews and the report), but deliver nothing and change no delivery "
            "ledger. Ingestion, identities, profiles and memberships of the day are computed as in a real run "
            "(each replaces its day's slice), so the real run of the same day delivers exactly what it would have.",
        ),
    },
) as dag:

    @task
    def load_workspace() -> list[str]:
        """Load and check the workspace (failing with every problem listed, without retries); return its
        datasets."""
        from cdp_provider.workspace import checked_workspace

        return sorted(checked_workspace().datasets)

    @task
    def list_destinations(params: dict[str, Any] | None = None) -> list[str]:
        """The destinations this run exports to, one export task each: the Params audiences / destinations /
        full_resync checked against the workspace (an unknown name fails the run at once, naming it)."""
        from cdp_provider.run_selection import selected_destinations
        from cdp_provider.workspace import checked_workspace

        return selected_destinations(checked_workspace(), params or {})

    # The Params are checked first: a run triggered with an unknown name stops before it reads anything.
    destinations = list_destinations()
    datasets = load_workspace()
    destinations >> datasets

    validate = CdpSparkJobOperator.partial(
        task_id="validate", job="validate", map_index_template="{{ task.dataset }}"
    ).expand(dataset=datasets)
    ingest = CdpSparkJobOperator.partial(
        task_id="ingest", job="ingest", map_index_template="{{ task.dataset }}"
    ).expand(dataset=datasets)

    def check(stage: str, **kwargs: Any) -> CdpSparkJobOperator:
        return CdpSparkJobOperator(task_id=f"check_{stage}", job="check_quality", extra_args=["--stage", stage],
                                   **kwargs)

    resolve = CdpSparkJobOperator(
        task_id="resolve_identities",
        job="resolve_identities",
        extra_args=["--mode", "{{ 'full' if params.full_identity_rebuild else 'auto' }}"],
    )
    profiles = CdpSparkJobOperator(task_id="build_profiles", job="build_profiles")
    # Updates the asset that destinations on their own cadence (dags/cdp_activate.py) are scheduled on: the event's
    # extra holds the run date and the membership table version.
    audiences = CdpSparkJobOperator(task_id="evaluate_audiences", job="evaluate_audiences",
                                    outlets=[AUDIENCE_MEMBERSHIP])
    export = CdpSparkJobOperator.partial(
        task_id="export",
        job="export",
        map_index_template="{{ task.destination }}",
        full_resync="{{ params.full_resync | join(',') }}",
        dry_run_flag="{{ params.dry_run }}",
    ).expand(destination=destinations)
    # The report runs whatever happened to the exports: one destination down fails its own task only, and
    # the report still says what every other destination received. "all_done_min_one_success" with the audience
    # gate upstream too: both run once the run reached the exports, and neither when it stopped before (a
    # failed gate, an unknown name in the Params), which would only fail again and send a second alert.
    report = CdpSparkJobOperator(task_id="report", job="report", trigger_rule="all_done_min_one_success")
    audience_gate = check("audiences")
    # Runs whatever the exports did: a destination that failed is counted, and every delivered file must
    # hold exactly the rows its destination activated.
    export_gate = check("exports", trigger_rule="all_done_min_one_success", dry_run_flag="{{ params.dry_run }}")

    (
        validate
        >> ingest
        >> check("ingest")
        >> resolve
        >> check("identities")
        >> profiles
        >> check("profiles")
        >> audiences
        >> audience_gate
        >> export
        >> export_gate
        >> report
    )
    audience_gate >> [export_gate, report]
