"""Destinations on their own cadence: one DAG each, scheduled on the membership asset (and a timetable for the
hour cadences); cdp_daily leaves them out; evaluate_audiences' asset event carries the run date and version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.sdk.execution_time.context import OutletEventAccessors
from cdp_provider.assets import AUDIENCE_MEMBERSHIP
from cdp_provider.cadence import membership_to_activate
from cdp_provider.run_selection import selected_destinations

from cdp.errors import WorkspaceError
from cdp.workspace.loader import load_workspace

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
# As tests/dags/test_dag_integrity.py: sockets and SQLite refused, then the heavy modules the parse imported.
DAG_INTEGRITY_PROBE = r"""
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
DAILY = ["ads_partner_s3", "analytics_gcs", "crm_api", "crm_sync_azure", "partner_sftp", "profile_bus"]


def with_schedules(repo_root: Path, folder: Path, schedules: dict[str, str]) -> Path:
    """The example workspace, with ``schedule:`` added to some destinations."""
    workspace = folder / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    for name, schedule in schedules.items():
        path = workspace / "destinations" / f"{name}.yaml"
        path.write_text(path.read_text(encoding="utf-8") + f"schedule: {schedule}\n", encoding="utf-8")
    return workspace


@pytest.fixture(scope="module")
def cadence_workspace(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_schedules(repo_root, tmp_path_factory.mktemp("cadence"), {
        "marketing_landing": "every 6h", "profile_stream": "after_audience_evaluation", "crm_api": "daily"})


@pytest.fixture(scope="module")
def dagbag(cadence_workspace: Path) -> Iterator[DagBag]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDP_WORKSPACE", str(cadence_workspace))
        yield DagBag(dag_folder=str(DAGS_DIR))


def test_one_dag_per_destination_with_a_cadence(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"cdp_daily", "cdp_maintenance", "cdp_activate__marketing_landing",
                                   "cdp_activate__profile_stream"}
    for dag_id in ("cdp_activate__marketing_landing", "cdp_activate__profile_stream"):
        dag = dagbag.dags[dag_id]
        assert {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} == {
            "membership": ["check_audiences"], "check_audiences": ["export"], "export": []}
        assert dag.max_active_runs == 1 and dag.catchup is False
        assert set(dag.tags) == {"cdp", "activation", "cadence"} and "cdp_audience_membership" in (dag.doc_md or "")
        assert all(t.retries >= 1 for t in dag.tasks)
        export = dag.get_task("export")
        assert export.destination == dag_id.removeprefix("cdp_activate__")  # type: ignore[attr-defined]
        assert export.run_date == "{{ ti.xcom_pull(task_ids='membership')['run_date'] }}"  # type: ignore[attr-defined]
        assert dag.get_task("check_audiences").extra_args == ["--stage", "audiences"]  # type: ignore[attr-defined]
        assert dag.get_task("membership").inlets == [AUDIENCE_MEMBERSHIP]
        for value, rendered in ((False, ""), (True, export.destination)):  # type: ignore[attr-defined]
            assert export.render_template(export.full_resync, {  # type: ignore[attr-defined]
                "params": {"full_resync": value}, "task": export}) == rendered


def test_generating_the_dags_touches_no_database_and_imports_nothing_heavy(cadence_workspace: Path) -> None:
    """The DAG file reads the destinations' YAML, not the workspace loader (nor Spark, GX...)."""
    probe = DAG_INTEGRITY_PROBE.replace('print(json.dumps({"heavy": heavy}))',
                                        'print(json.dumps({"heavy": heavy, "dags": sorted(module.__dict__)}))')
    result = subprocess.run([sys.executable, "-c", probe, str(DAGS_DIR / "cdp_activate.py")], capture_output=True,
                            text=True, check=False, env={**os.environ, "CDP_WORKSPACE": str(cadence_workspace)})
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["heavy"] == []
    assert {"cdp_activate__marketing_landing", "cdp_activate__profile_stream"} <= set(parsed["dags"])


def test_schedules_asset_and_timetable(dagbag: DagBag) -> None:
    after = dagbag.dags["cdp_activate__profile_stream"]
    # after_audience_evaluation: on the asset only.
    assert after.timetable.asset_condition == AUDIENCE_MEMBERSHIP  # type: ignore[attr-defined]
    assert not isinstance(after.timetable, AssetOrTimeSchedule)
    six = dagbag.dags["cdp_activate__marketing_landing"]
    # every 6h: on the asset, and at 00, 06, 12 and 18 UTC.
    assert isinstance(six.timetable, AssetOrTimeSchedule)
    assert six.timetable.asset_condition == AUDIENCE_MEMBERSHIP
    assert isinstance(six.timetable.timetable, CronTriggerTimetable)
    assert six.timetable.timetable.expression == "0 */6 * * *"  # type: ignore[attr-defined]
    assert str(six.timetable.timetable.timezone) == "UTC"  # type: ignore[attr-defined]
    # cdp_daily's evaluation updates the asset both wait for.
    assert dagbag.dags["cdp_daily"].get_task("evaluate_audiences").outlets == [AUDIENCE_MEMBERSHIP]


def test_the_daily_run_leaves_cadence_destinations_out(cadence_workspace: Path) -> None:
    ws = load_workspace(str(cadence_workspace))
    # crm_api says "daily": the same as no schedule.
    assert selected_destinations(ws, {}) == DAILY
    # gold_members is also mapped by marketing_landing and profile_stream, which run on their own.
    assert selected_destinations(ws, {"audiences": ["gold_members"]}) == [
        "ads_partner_s3", "analytics_gcs", "crm_api", "crm_sync_azure"]
    with pytest.raises(AirflowFailException) as refused:
        selected_destinations(ws, {"destinations": ["partner_sftp", "marketing_landing"]})
    assert str(refused.value) == (
        "Param destinations: 'marketing_landing' run(s) on a schedule of their own (marketing_landing: every 6h, "
        "DAG cdp_activate__marketing_landing), not with cdp_daily; trigger that DAG instead, or leave them out")


def test_a_schedule_that_is_no_cadence(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = with_schedules(repo_root, tmp_path, {"partner_sftp": "every 4h"})
    message = ("unknown schedule 'every 4h' (one of: every 3h, every 6h, every 8h, every 12h, "
               "after_audience_evaluation, daily; leave it out to export with the daily run cdp_daily)")
    with pytest.raises(WorkspaceError) as failed:
        load_workspace(str(workspace))
    assert [str(p) for p in failed.value.problems] == [f"destinations/partner_sftp.yaml: schedule: Value error, "
                                                      f"{message}"]
    # The DAG file says it too, as its import error in the Airflow UI; the other DAG files still load.
    monkeypatch.setenv("CDP_WORKSPACE", str(workspace))
    bag = DagBag(dag_folder=str(DAGS_DIR))
    [(path, error)] = bag.import_errors.items()
    assert path.endswith("dags/cdp_activate.py")
    assert error.strip().splitlines()[-1] == f"cdp.workspace.cadence.CadenceError: destinations/partner_sftp.yaml: " \
                                             f"schedule: {message}"
    assert set(bag.dag_ids) == {"cdp_daily", "cdp_maintenance"}


def test_evaluate_audiences_fills_the_asset_event(dagbag: DagBag) -> None:
    # The operator turns the job's reported version into the event's extra (the real event in the metadata database
    # is checked by tests/e2e/test_cadence_dag.py).
    task = dagbag.dags["cdp_daily"].get_task("evaluate_audiences")
    task.run_date = "2026-11-27"  # type: ignore[attr-defined]  # rendered by Airflow before execute
    events = OutletEventAccessors()
    task.publish_output({"outlet_events": events},  # type: ignore[attr-defined]
                        {"membership": {"run_date": "2026-11-27", "membership_version": 12}})
    assert events[AUDIENCE_MEMBERSHIP].extra == {"run_date": "2026-11-27", "membership_version": 12}
    # A driver that could not report (a cluster's machine): the run date, and no version.
    events = OutletEventAccessors()
    task.publish_output({"outlet_events": events}, {})  # type: ignore[attr-defined]
    assert events[AUDIENCE_MEMBERSHIP].extra == {"run_date": "2026-11-27", "membership_version": None}


class Inlet:
    """The slice of Airflow's InletEventsAccessor the task uses, over a list (the real one asks the API server)."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def ascending(self, ascending: bool = True) -> Inlet:
        return Inlet(sorted(self.events, key=lambda e: e.timestamp, reverse=not ascending))

    def limit(self, n: int) -> list[Any]:
        return self.events[:n]


def event(day: str, version: int | None, hour: int) -> SimpleNamespace:
    return SimpleNamespace(extra={"run_date": day, "membership_version": version}, source_run_id=f"run_{day}",
                           timestamp=pendulum.datetime(2026, 11, 28, hour, tz="UTC"))


def test_which_snapshot_a_cadence_run_activates() -> None:
    old, new = event("2026-11-26", 7, 1), event("2026-11-27", 9, 2)
    # Triggered by the asset: the newest triggering event.
    chosen = membership_to_activate({"triggering_asset_events": {AUDIENCE_MEMBERSHIP: [new, old]},
                                     "inlet_events": {AUDIENCE_MEMBERSHIP: Inlet([])}})
    assert chosen == {"run_date": "2026-11-27", "membership_version": 9, "source_run_id": "run_2026-11-27",
                      "trigger": "asset event"}
    # Triggered by time or by hand: the newest event the asset ever had.
    chosen = membership_to_activate({"triggering_asset_events": {},
                                     "inlet_events": {AUDIENCE_MEMBERSHIP: Inlet([old, new])}})
    assert chosen["run_date"] == "2026-11-27" and chosen["trigger"] == "latest asset event"
    with pytest.raises(AirflowSkipException, match="asset cdp_audience_membership has no event yet"):
        membership_to_activate({"triggering_asset_events": {}, "inlet_events": {AUDIENCE_MEMBERSHIP: Inlet([])}})
    bad = SimpleNamespace(extra={"note": "by hand"}, source_run_id=None, timestamp=new.timestamp)
    with pytest.raises(AirflowFailException, match="has no valid 'run_date' in its extra"):
        membership_to_activate({"triggering_asset_events": {AUDIENCE_MEMBERSHIP: [bad]}, "inlet_events": {}})
