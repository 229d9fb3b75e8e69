"""The end-to-end stack: a real Airflow (API server, scheduler, DAG processor; tests/servers/airflow_stack.py) on
loopback running ``cdp_daily`` over the three days of tests/e2e/scenario.py, once for the whole session.

``airflow_stack`` is the running deployment (``base_url``, an authenticated ``api(method, path, json=None)``,
``env``, ``airflow_home``, ``lake``); ``daily_runs`` the runs made through it, in this order:

1. day 1 triggered through the REST API (``POST /api/v2/dags/cdp_daily/dagRuns``, Params in ``conf``);
2. a dry run of day 2 (Param ``dry_run``), with what was delivered before and after it;
3. a backfill of days 2-3 (``POST /api/v2/backfills``), one run at a time, oldest first;
4. a backfill of day 2 again, reprocessing the completed run, with the deliveries before and after it.

Another test module (the Activation dashboard's browser test) can use both fixtures: the runs happen once.
Every task is a Spark Connect client of the session's loopback server (``spark_connect_server``); task logs and
the jobs log at DEBUG (the PII test scans them). ``CDP_E2E_KEEP`` keeps the folder for a look afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from scenario import DAYS, write_hand_written
from servers.airflow_stack import AirflowStack
from servers.postgres import PostgresServer

DAG = "cdp_daily"
# The ledgers and metrics a dry run must leave alone, and a re-run must not change for what was delivered.
LEDGERS = ("export_ledger", "destination_metrics", "delivery_ledger")


@dataclass
class StackInfo:
    """The running stack as the e2e tests (and the dashboard's browser test) see it."""

    stack: AirflowStack
    base: Path
    lake: Path
    landing: Path
    exports: Path

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    @property
    def airflow_home(self) -> Path:
        return self.stack.home

    def api(self, method: str, path: str, json: Any = None) -> Any:
        """Call Airflow's REST API as the stack's admin user (see :meth:`AirflowStack.api`)."""
        return self.stack.api(method, path, json)


@pytest.fixture(scope="session")
def metadata_database() -> Iterator[PostgresServer]:
    """Airflow's metadata database for the stack: PostgreSQL on loopback (on SQLite, the scheduler and the
    backfill endpoint of the API server raced for the database lock: a 503 and a crashed scheduler loop)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def airflow_stack(repo_root: Path, spark_connect_server: Any, metadata_database: PostgresServer
                  ) -> Iterator[StackInfo]:
    # Not under pytest's basetemp: another pytest session of the same user prunes old basetemps.
    base = Path(tempfile.mkdtemp(prefix="cdp-e2e-"))
    workspace, landing = base / "workspace", base / "landing"
    bin_dir = Path(sys.executable).parent
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    # The example's remote destinations (S3, Azure, GCS, SFTP, HTTP, Kafka, Kinesis) are exercised against their
    # servers by tests/integration/test_export_destinations.py and the streaming tests; here the local one stands
    # for them all (the DAG's export tasks are one per destination, alike), which keeps the runs short.
    for remote in ("ads_partner_s3", "crm_sync_azure", "analytics_gcs", "partner_sftp", "crm_api", "profile_bus",
                   "profile_stream"):
        (workspace / "destinations" / f"{remote}.yaml").unlink()
    # Four-line files: one bad line is 25%; let the batch through so the bad lines are quarantined.
    ws_file = workspace / "workspace.yaml"
    ws_file.write_text(ws_file.read_text().replace("max_rejected_share: 0.10", "max_rejected_share: 0.5"))
    subprocess.run([str(bin_dir / "cdp"), "generate", "--profiles", "200", "--days", "3", "--seed", "7",
                    "--end-date", DAYS[-1], "--out", str(landing)], check=True, capture_output=True)
    write_hand_written(landing)
    env = {
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1",
                                                  "port": spark_connect_server.port}),
        "CDP_WORKSPACE": str(workspace),
        "CDP_LAKE": str(base / "lake"),
        "CDP_LANDING": str(landing),
        "CDP_EXPORTS": str(base / "exports"),
        "CDP_TASK_RETRIES": "0",
        "CDP_DRIVER_MEMORY": "1g",
        "CDP_SHUFFLE_PARTITIONS": "2",
        # Issue 14: the whole run logs at DEBUG, and still no e-mail or phone may reach a log.
        "CDP_LOG_LEVEL": "DEBUG",
    }
    stack = AirflowStack(env, home=str(base / "airflow"), task_log_level="DEBUG",
                         database=metadata_database.sqlalchemy_url).start()
    info = StackInfo(stack, base, base / "lake", landing, base / "exports")
    try:
        yield info
    finally:
        stack.stop()
        if not os.environ.get("CDP_E2E_KEEP"):
            shutil.rmtree(base, ignore_errors=True)  # the landed files hold (test) PII
    assert stack.strays == [], f"processes left running after the stack stopped (killed now): {stack.strays}"


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def delivered_files(exports: Path) -> dict[str, tuple[str, int]]:
    """Every file of the exports folder: relative path -> (SHA-256, modification time in ns)."""
    return {str(p.relative_to(exports)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(exports.rglob("*")) if p.is_file()} if exports.exists() else {}


def ledger_rows(spark: SparkSession, lake: Path) -> dict[str, list[str]]:
    """Every row of the ledgers and destination metrics, as sorted JSON lines (absent table: no rows)."""
    out: dict[str, list[str]] = {}
    for table in LEDGERS:
        path = lake / table
        out[table] = sorted(json.dumps(r.asDict(recursive=True), default=str, sort_keys=True)
                            for r in spark.read.format("delta").load(str(path)).collect()) if path.exists() else []
    return out


def run_record(stack: AirflowStack, run: dict[str, Any]) -> dict[str, Any]:
    """What the tests need of a finished run: its id, type, state, data interval, conf and tasks' states."""
    run_id = str(run["dag_run_id"])
    return {"run_id": run_id, "run_type": run["run_type"], "state": run["state"],
            "run_date": str(run["data_interval_start"])[:10], "conf": run.get("conf") or {},
            "start_date": run["start_date"], "end_date": run["end_date"], "tasks": stack.task_states(DAG, run_id),
            "failure": "" if run["state"] == "success" else stack.failure_summary(DAG, run_id)}


@pytest.fixture(scope="session")
def daily_runs(airflow_stack: StackInfo, spark: SparkSession) -> dict[str, Any]:
    stack = airflow_stack.stack
    lake, exports = airflow_stack.lake, airflow_stack.exports
    d1, d2, d3 = (day(d) for d in DAYS)
    out: dict[str, Any] = {"base": airflow_stack.base, "exports": exports, "lake": lake,
                           "landing": airflow_stack.landing, "airflow_home": airflow_stack.airflow_home, "runs": {}}

    def api_run(run_id: str) -> dict[str, Any]:
        return dict(stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}"))

    # 1. Day 1 through the REST API, its Params in conf.
    first = stack.trigger(DAG, d1, {"dry_run": False, "destinations": [], "full_identity_rebuild": False})
    stack.wait_for_run(DAG, first)
    out["runs"]["day1"] = run_record(stack, api_run(first))
    if out["runs"]["day1"]["state"] != "success":
        return out  # the next days depend on this one; the tests say which run failed and why

    # 2. A dry run of day 2, at a logical date of its own (now, as the UI would): day 2's slot stays free for
    # the real run, which the backfill below makes.
    before = {"files": delivered_files(exports), "ledgers": ledger_rows(spark, lake)}
    dry = stack.trigger(DAG, d2, {"dry_run": True}, logical_date=dt.datetime.now(dt.UTC))
    stack.wait_for_run(DAG, dry)
    out["runs"]["dry_run"] = run_record(stack, api_run(dry))
    out["dry_run"] = {"before": before, "after": {"files": delivered_files(exports),
                                                  "ledgers": ledger_rows(spark, lake)}}

    # 3. Days 2-3 by a backfill: in order, one at a time.
    backfill = stack.backfill(DAG, d2, d3)
    out["backfill"] = [run_record(stack, r) for r in stack.wait_for_backfill(backfill)]

    # 4. Day 2 again, reprocessing its completed run: nothing may be delivered twice.
    before = {"files": delivered_files(exports), "ledgers": ledger_rows(spark, lake)}
    again = stack.backfill(DAG, d2, d2, reprocess="completed")
    out["rerun"] = [run_record(stack, r) for r in stack.wait_for_backfill(again)]
    out["rerun_deliveries"] = {"before": before, "after": {"files": delivered_files(exports),
                                                           "ledgers": ledger_rows(spark, lake)}}
    return out
