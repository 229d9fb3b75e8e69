"""A destination on its own cadence, run for real: `evaluate_audiences` of cdp_daily updates the membership asset,
then `cdp_activate__marketing_landing` activates that snapshot, exactly once.

On the small lake of ``tests/integration/export_lake.py`` (profiles, identity map and events of 2026-11-27, as
build_profiles leaves them), with the example workspace whose ``marketing_landing`` says ``schedule: every 6h``:

1. ``airflow dags test cdp_daily`` runs ``evaluate_audiences`` for real (a Spark Connect client of the session's
   loopback server) and marks the other Spark tasks successful (``--mark-success-pattern``): its asset event
   lands in the metadata database with the run date and the membership version in ``extra``;
2. ``airflow dags test cdp_activate__marketing_landing`` (a run started by hand: the newest asset event) runs the
   audience gate and the export for that run date: the exact files;
3. the same DAG again: nothing is sent twice (the files are the same inodes, the ledger says delivered once).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from integration.export_lake import D, build_lake
from pyspark.sql import SparkSession

from cdp.job import COMMITTED, StepKey, mark_step
from cdp.lake import AUDIENCE_MEMBERSHIP, EXPORT_LEDGER, Lake
from cdp.spark_connect import ServerState
from cdp.workspace.loader import load_workspace

pytestmark = pytest.mark.timeout(1800)

HEADER = "crm_id,email,first_name,loyalty_tier,country,membership_status,last_qualification_time\n"
FILES = {
    "marketing_landing_gold_members_20261127.csv": HEADER
    + "C1,ann@example.com,Ann,gold,FR,realized,2026-11-28T00:00:00Z\n"
    + 'C2|C3,bob@example.com,"Bob ""Bobby"", Jr",platinum,DE,realized,2026-11-28T00:00:00Z\n',
    # Cy, the only cart abandoner, has neither a CRM id nor an e-mail: a row that identifies no one is not sent.
    "marketing_landing_cart_abandoners_20261127.csv": HEADER,
    "marketing_landing_french_high_points_20261127.csv": HEADER,
}
# Everything of cdp_daily but the workspace tasks and evaluate_audiences is marked successful without running.
ONLY_EVALUATION = "(?!(list_destinations|load_workspace|evaluate_audiences)$).*"


def airflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True,
                            text=True, check=False, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def states(db: Path, dag_id: str) -> dict[str, str]:
    """The state of each task of the DAG's newest run (rows ordered by start: the newest wins)."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND map_index = -1 "
                                 "ORDER BY start_date", (dag_id,)).fetchall())


def delivered_at(spark: SparkSession, lake: Lake) -> dict[str, object]:
    """File name -> when the export ledger says it was delivered (one delivered row per file)."""
    rows = spark.read.format("delta").load(lake.path(EXPORT_LEDGER)).where("status = 'delivered'").collect()
    assert len(rows) == len({r["file_name"] for r in rows})
    return {r["file_name"]: r["delivered_at"] for r in rows}


def test_a_cadence_dag_activates_the_evaluated_snapshot_once(
        tmp_path: Path, repo_root: Path, spark: SparkSession, spark_connect_server: ServerState) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    destination = workspace / "destinations" / "marketing_landing.yaml"
    destination.write_text(destination.read_text(encoding="utf-8") + "schedule: every 6h\n", encoding="utf-8")
    lake = Lake(str(tmp_path / "lake"))
    build_lake(spark, load_workspace(str(workspace)), lake)
    mark_step(lake, D, StepKey("build_profiles"), COMMITTED, "test")

    db = tmp_path / "airflow.db"
    shutil.copy(repo_root / ".airflow" / "airflow.db", db)  # the setup's migrated metadata database
    exports = tmp_path / "exports"
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}",
           "AIRFLOW__CORE__DAGS_FOLDER": str(repo_root / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo_root / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1",
                                                     "port": spark_connect_server.port}),
           "CDP_TASK_RETRIES": "0", "CDP_SHUFFLE_PARTITIONS": "2",
           "CDP_WORKSPACE": str(workspace), "CDP_LAKE": lake.root, "CDP_LANDING": str(tmp_path / "landing"),
           "CDP_EXPORTS": str(exports)}

    # 1. The daily run's evaluation (run date 2026-11-27) updates the asset.
    daily = airflow(env, "dags", "test", "cdp_daily", "2026-11-28T00:00:00+00:00",
                    "--mark-success-pattern", ONLY_EVALUATION)
    assert states(db, "cdp_daily")["evaluate_audiences"] == "success", daily[-6000:]
    version = spark.sql(f"DESCRIBE HISTORY delta.`{lake.path(AUDIENCE_MEMBERSHIP)}` LIMIT 1").first()
    assert version is not None
    with sqlite3.connect(db) as conn:
        events = conn.execute("SELECT e.source_dag_id, e.source_task_id, e.extra FROM asset_event e JOIN asset a "
                              "ON a.id = e.asset_id WHERE a.name = 'cdp_audience_membership'").fetchall()
    assert [(dag, task, json.loads(extra)) for dag, task, extra in events] == [
        ("cdp_daily", "evaluate_audiences", {"run_date": "2026-11-27", "membership_version": version["version"]})]
    # The daily run did not export the destination that has its own cadence.
    assert not exports.exists()

    # 2. The destination's own DAG activates that snapshot.
    first = airflow(env, "dags", "test", "cdp_activate__marketing_landing", "2026-11-28T06:00:00+00:00")
    assert states(db, "cdp_activate__marketing_landing") == {
        "membership": "success", "check_audiences": "success", "export": "success"}, first[-6000:]
    folder = exports / "marketing"
    assert {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()} == FILES
    inodes = {p.name: p.stat().st_ino for p in folder.iterdir()}
    assert sorted(delivered_at(spark, lake)) == sorted(FILES)

    # 3. Run again (as the next 6-hour tick would): the ledger says every file is delivered; nothing is sent again.
    second = airflow(env, "dags", "test", "cdp_activate__marketing_landing", "2026-11-28T12:00:00+00:00")
    assert states(db, "cdp_activate__marketing_landing")["export"] == "success", second[-6000:]
    assert {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()} == FILES
    assert {p.name: p.stat().st_ino for p in folder.iterdir()} == inodes
    assert second.count("already delivered") == len(FILES), second[-6000:]
    # Still one delivered ledger row per file (the re-plan stamps delivered_at again: the inodes above and the
    # "already delivered" lines say that nothing was sent).
    assert sorted(delivered_at(spark, lake)) == sorted(FILES)
