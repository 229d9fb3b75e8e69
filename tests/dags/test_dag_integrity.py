"""DAG integrity: every DAG imports, follows the house policy, and parses without side effects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p.name for p in DAGS_DIR.glob("*.py"))

# Run in a fresh interpreter: block sockets and SQLite, import the DAG file, report what it loaded.
PROBE = r"""
import importlib.util, json, socket, sqlite3, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network or database access while parsing a DAG")
socket.socket.connect = refuse
sqlite3.connect = refuse
spec = importlib.util.spec_from_file_location("probe_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = sorted(m for m in ("pyspark", "great_expectations", "delta", "pandas", "cdp.workspace.loader")
               if m in sys.modules)
print(json.dumps({"heavy": heavy}))
"""


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS_DIR))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"cdp_daily", "cdp_maintenance"}


def test_policy_tags_retries_docs(dagbag: DagBag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_parse_has_no_side_effects_and_no_heavy_imports(dag_file: str) -> None:
    """Parsing must not touch a database or the network, nor import Spark / GX (what makes parsing slow)."""
    result = subprocess.run([sys.executable, "-c", PROBE, str(DAGS_DIR / dag_file)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"heavy": []}


def test_cdp_daily_task_graph(dagbag: DagBag) -> None:
    dag = dagbag.dags["cdp_daily"]
    downstream = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert downstream == {
        "load_workspace": ["ingest", "validate"],
        "validate": ["ingest"],
        "ingest": ["check_ingest"],
        "check_ingest": ["resolve_identities"],
        "resolve_identities": ["check_identities"],
        "check_identities": ["build_profiles"],
        "build_profiles": ["check_profiles"],
        "check_profiles": ["evaluate_audiences"],
        "evaluate_audiences": ["check_audiences"],
        "check_audiences": ["check_exports", "export", "report"],
        "list_destinations": ["export", "load_workspace"],
        "export": ["check_exports"], "check_exports": ["report"],
        "report": [],
    }


def test_cdp_daily_schedule_is_a_daily_data_interval(dagbag: DagBag) -> None:
    """The run date is the data interval start: the run after midnight processes the day that ended."""
    import pendulum
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags["cdp_daily"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    interval = dag.timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 28, 9, 30, tz="UTC"))
    assert (interval.start.isoformat(), interval.end.isoformat()) == (
        "2026-11-27T00:00:00+00:00", "2026-11-28T00:00:00+00:00")
    assert dag.max_active_runs == 1
    assert dag.catchup is False


def test_full_identity_rebuild_param_reaches_the_job(dagbag: DagBag) -> None:
    """Identity resolution is incremental unless the run is triggered with full_identity_rebuild."""
    dag = dagbag.dags["cdp_daily"]
    assert dag.params["full_identity_rebuild"] is False
    task = dag.get_task("resolve_identities")
    for value, mode in ((False, "auto"), (True, "full")):
        rendered = task.render_template(task.extra_args, {"params": {"full_identity_rebuild": value}})
        assert rendered == ["--mode", mode]


def test_dry_run_param_reaches_the_exports_and_their_gate_only(dagbag: DagBag) -> None:
    """A dry run: the export tasks and the export gate get --dry-run; the steps before them run as always."""
    from cdp_provider.operators.spark_job import CdpSparkJobOperator

    dag = dagbag.dags["cdp_daily"]
    assert dag.params["dry_run"] is False
    gate = dag.get_task("check_exports")
    assert dag.get_task("export").partial_kwargs["dry_run_flag"] == gate.dry_run_flag == "{{ params.dry_run }}"
    assert [t.task_id for t in dag.tasks if getattr(t, "dry_run_flag", "")] == ["check_exports"]
    for value in (False, True):
        flag = gate.render_template(gate.dry_run_flag, {"params": {"dry_run": value}})
        job = CdpSparkJobOperator(task_id="export_probe", job="export", destination="marketing_landing",
                                  run_date="2026-11-27", dry_run_flag=flag)
        assert ("--dry-run" in job.job_arguments("manual__1")) is value


def test_cdp_maintenance_runs_the_maintenance_job_daily(dagbag: DagBag) -> None:
    """One task, the maintenance job, for the run date; once a day at 03:00 UTC, one run at a time."""
    import pendulum
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags["cdp_maintenance"]
    assert [t.task_id for t in dag.tasks] == ["maintenance"]
    task = dag.get_task("maintenance")
    assert task.application.endswith("jobs/maintenance.py")  # type: ignore[attr-defined]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    interval = dag.timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 28, 9, 30, tz="UTC"))
    assert (interval.start.isoformat(), interval.end.isoformat()) == (
        "2026-11-27T03:00:00+00:00", "2026-11-28T03:00:00+00:00")
    assert dag.max_active_runs == 1
