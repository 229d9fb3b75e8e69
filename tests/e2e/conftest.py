"""Fixtures of the e2e tier: the three DAG days (``daily_runs``, run once per test session and shared by every
module of tests/e2e) and the Airflow API server over their AIRFLOW_HOME (``airflow_ui``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_days import DAYS, logical_date, run_states, write_hand_written


@pytest.fixture(scope="session")
def daily_runs(repo_root: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    # CDP_E2E_REUSE: the folder of a finished run of these modules (kept when CDP_E2E_KEEP is set) to check
    # the assertions again without running the DAG three times (a development aid; CI sets neither).
    # Not under pytest's basetemp: another pytest session of the same user prunes old basetemps, which
    # would delete the lake under a run that lasts longer than theirs.
    reuse = os.environ.get("CDP_E2E_REUSE")
    base = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="cdp-e2e-"))
    workspace = base / "workspace"
    landing = base / "landing"
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Connect mode, the default: the jobs are clients of the session's loopback server (started only when the
        # DAG runs, not when CDP_E2E_REUSE checks a finished run again).
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
            {"conn_type": "spark", "host": "local[2]"} if reuse else
            {"conn_type": "spark_connect", "host": "sc://127.0.0.1",
             "port": request.getfixturevalue("spark_connect_server").port}),
        "CDP_WORKSPACE": str(workspace),
        "CDP_LAKE": str(base / "lake"),
        "CDP_LANDING": str(landing),
        "CDP_EXPORTS": str(base / "exports"),
        "CDP_TASK_RETRIES": "0",
        "CDP_DRIVER_MEMORY": "1g",
        "CDP_SHUFFLE_PARTITIONS": "2",
    }
    airflow = str(bin_dir / "airflow")
    outputs: dict[str, str] = {}
    states: dict[str, list[str]] = {}
    if reuse:
        for day in DAYS:
            log = base / f"dags_test_{day}.log"
            if log.exists():
                outputs[day] = log.read_text(encoding="utf-8")
                try:
                    states[day] = run_states(airflow, env, day)
                except subprocess.CalledProcessError as error:  # a folder the DAG never ran in
                    states[day] = [f"not listed: {error.stderr.strip().splitlines()[-1:]}"]
    else:
        shutil.copytree(repo_root / "examples" / "retail", workspace)
        # The example's remote destinations (S3, Azure, GCS, SFTP, HTTP, Kafka, Kinesis) are exercised against their
        # servers by tests/integration/test_export_destinations.py; here the local one stands for them all (the
        # DAG's export tasks are one per destination, alike), which keeps three DAG days 21 tasks shorter.
        for remote in ("ads_partner_s3", "crm_sync_azure", "analytics_gcs", "partner_sftp", "crm_api", "profile_bus",
                       "profile_stream"):
            (workspace / "destinations" / f"{remote}.yaml").unlink()
        # Four-line files: one bad line is 25%; let the batch through so the bad lines are quarantined.
        ws_file = workspace / "workspace.yaml"
        ws_file.write_text(ws_file.read_text().replace("max_rejected_share: 0.10", "max_rejected_share: 0.5"))
        subprocess.run([str(bin_dir / "cdp"), "generate", "--profiles", "200", "--days", "3", "--seed", "7",
                        "--end-date", DAYS[-1], "--out", str(landing)], check=True, capture_output=True)
        write_hand_written(landing)
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        for day in DAYS:
            result = subprocess.run([airflow, "dags", "test", "cdp_daily", logical_date(day)], env=env,
                                    capture_output=True, text=True, check=False)
            outputs[day] = result.stdout + result.stderr
            (base / f"dags_test_{day}.log").write_text(outputs[day], encoding="utf-8")
            states[day] = run_states(airflow, env, day)
            if states[day] != ["success"]:
                break  # the next days depend on this one: stop, the test below says which day failed and why
    yield {"base": base, "exports": base / "exports", "lake": base / "lake", "landing": landing,
           "airflow_home": base / "airflow", "outputs": outputs, "states": states, "env": env}
    if not reuse and not os.environ.get("CDP_E2E_KEEP"):
        shutil.rmtree(base, ignore_errors=True)  # the landed files hold (test) PII


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def airflow_ui(daily_runs: dict[str, Any]) -> Iterator[str]:
    """``airflow api-server`` on a free loopback port over the AIRFLOW_HOME and lake of ``daily_runs``; its base
    URL. Every user is an admin (simple auth manager), so the browser needs no login. Stopped after the session."""
    port = _free_port()
    env = {**daily_runs["env"], "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    log_path = daily_runs["base"] / "api_server.log"
    with log_path.open("w", encoding="utf-8") as log:
        command = [str(Path(sys.executable).parent / "airflow"), "api-server", "--host", "127.0.0.1", "--port",
                   str(port), "--workers", "1"]
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"airflow api-server exited with {server.returncode}; log {log_path}:\n"
                            + log_path.read_text(encoding="utf-8")[-4000:])
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not answer on {base} within 180 s; log {log_path}")
            time.sleep(1)
        yield base
    finally:
        # The server forks its workers in its own session: stop that group, which this fixture started.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
