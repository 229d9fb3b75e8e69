"""The trigger Params of cdp_daily: typed, described, checked against the workspace when the run starts, and
passed on to the jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError
from cdp_provider.run_selection import selected_destinations

from cdp.workspace.loader import Workspace, load_workspace

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
ALL = ["ads_partner_s3", "analytics_gcs", "crm_api", "crm_sync_azure", "marketing_landing", "partner_sftp",
       "profile_bus", "profile_stream"]


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="module")
def retail(repo_root: Path) -> Workspace:
    return load_workspace(str(repo_root / "examples" / "retail"))


def test_params_are_typed_and_described(dagbag: DagBag) -> None:
    params = dagbag.dags["cdp_daily"].params
    assert {k: params.get_param(k).resolve() for k in params} == {
        "audiences": [], "destinations": [], "full_resync": [], "full_identity_rebuild": False, "dry_run": False}
    for key in params:
        param = params.get_param(key)
        assert param.description and param.schema.get("title"), f"Param {key} has no title or description"
    assert params.get_param("audiences").schema["type"] == "array"
    assert params.get_param("full_identity_rebuild").schema["type"] == "boolean"
    assert params.get_param("dry_run").schema["type"] == "boolean"


def test_a_param_of_the_wrong_type_is_refused_by_the_trigger_form(dagbag: DagBag) -> None:
    params = dagbag.dags["cdp_daily"].params
    with pytest.raises(ParamValidationError, match="'gold_members' is not of type 'array'"):
        params.get_param("audiences").resolve("gold_members")
    with pytest.raises(ParamValidationError, match="'Marketing Landing' does not match"):
        params.get_param("destinations").resolve(["Marketing Landing"])
    assert params.get_param("full_resync").resolve(["crm_sync_azure"]) == ["crm_sync_azure"]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ALL),
    ({"audiences": [], "destinations": []}, ALL),
    ({"destinations": ["partner_sftp", "marketing_landing"]}, ["marketing_landing", "partner_sftp"]),
    ({"audiences": ["engaged_readers"]}, ["ads_partner_s3", "analytics_gcs"]),
    ({"audiences": ["french_high_points"], "destinations": ["partner_sftp", "crm_sync_azure"]}, ["partner_sftp"]),
    ({"destinations": ["crm_sync_azure"], "full_resync": ["crm_sync_azure"]}, ["crm_sync_azure"]),
])
def test_the_run_exports_to_the_chosen_destinations(retail: Workspace, params: dict[str, Any],
                                                     expected: list[str]) -> None:
    assert selected_destinations(retail, params) == expected


@pytest.mark.parametrize(("params", "message"), [
    ({"audiences": ["gold_members", "vip", "churners"]},
     "Param audiences: unknown audience(s) 'vip', 'churners' (the workspace defines: cart_abandoners, "
     "engaged_readers, french_high_points, gold_members); trigger the run again with names from that list"),
    ({"destinations": ["marketing_landnig"]},
     "Param destinations: unknown destination(s) 'marketing_landnig' (the workspace defines: ads_partner_s3, "
     "analytics_gcs, crm_api, crm_sync_azure, marketing_landing, partner_sftp, profile_bus, profile_stream); trigger "
     "the run again with names from that list"),
    ({"full_resync": ["s3"]},
     "Param full_resync: unknown destination(s) 's3' (the workspace defines: ads_partner_s3, analytics_gcs, "
     "crm_api, crm_sync_azure, marketing_landing, partner_sftp, profile_bus, profile_stream); trigger the run again "
     "with names from that list"),
    ({"audiences": ["gold_members"], "destinations": ["partner_sftp"]},
     "Param audiences: 'gold_members' mapped to none of the destinations of this run (partner_sftp); add a "
     "destination that maps it to the Param destinations, or leave it out"),
    ({"destinations": ["partner_sftp"], "full_resync": ["crm_sync_azure"]},
     "Param full_resync: 'crm_sync_azure' not exported by this run (it exports: partner_sftp); add it to the Param "
     "destinations, or leave it out"),
])
def test_an_unknown_name_fails_the_run_at_once(retail: Workspace, params: dict[str, Any], message: str) -> None:
    with pytest.raises(AirflowFailException) as failed:
        selected_destinations(retail, params)
    assert str(failed.value) == message


def test_the_dag_checks_the_params_before_anything_runs(dagbag: DagBag, repo_root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """list_destinations is the first task: load_workspace (and so every job) waits for it."""
    dag = dagbag.dags["cdp_daily"]
    task = dag.get_task("list_destinations")
    assert task.upstream_task_ids == set()
    assert "load_workspace" in task.downstream_task_ids
    monkeypatch.setenv("CDP_WORKSPACE", str(repo_root / "examples" / "retail"))
    assert task.python_callable(params={"audiences": ["cart_abandoners"]}) == [  # type: ignore[attr-defined]
        "analytics_gcs", "crm_sync_azure", "marketing_landing", "profile_bus", "profile_stream"]
    with pytest.raises(AirflowFailException) as failed:
        task.python_callable(params={"destinations": ["nowhere"]})  # type: ignore[attr-defined]
    assert str(failed.value).startswith("Param destinations: unknown destination(s) 'nowhere' (the workspace defines")


def test_full_resync_reaches_the_chosen_exports_only(dagbag: DagBag) -> None:
    """The export of a destination in full_resync gets --full-resync; the others do not."""
    from cdp_provider.operators.spark_job import CdpSparkJobOperator

    export = dagbag.dags["cdp_daily"].get_task("export")
    rendered = export.render_template(export.partial_kwargs["full_resync"],
                                      {"params": {"full_resync": ["crm_sync_azure", "partner_sftp"]}})
    assert rendered == "crm_sync_azure,partner_sftp"
    for destination, resync in (("crm_sync_azure", True), ("marketing_landing", False)):
        operator = CdpSparkJobOperator(task_id=f"export_{destination}", job="export", destination=destination,
                                       full_resync=rendered, run_date="2026-11-27")
        assert ("--full-resync" in operator.job_arguments("manual__1")) == resync
