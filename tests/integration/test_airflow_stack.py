"""The e2e harness itself (tests/servers/airflow_stack.py): a real API server, scheduler and DAG processor on
loopback that parse the repository's DAGs, answer the REST API only with a token, offer cdp_daily's Params
(the dry run's among them), and leave no process behind when stopped."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from servers.airflow_stack import AirflowError, AirflowStack, _stray_processes


def test_stack_serves_the_dags_with_their_params_and_stops_cleanly() -> None:
    stack = AirflowStack({"CDP_WORKSPACE": "unused-by-parsing"}).start()
    try:
        health = stack.api("GET", "/api/v2/monitor/health")
        assert (health["scheduler"]["status"], health["dag_processor"]["status"]) == ("healthy", "healthy")
        dags = sorted(d["dag_id"] for d in stack.api("GET", "/api/v2/dags")["dags"])
        assert dags == ["cdp_daily", "cdp_maintenance"]
        params = stack.api("GET", "/api/v2/dags/cdp_daily/details")["params"]
        assert params["dry_run"]["value"] is False
        assert params["dry_run"]["schema"]["type"] == "boolean"
        assert "deliver nothing" in params["dry_run"]["description"]
        # Without a token the API refuses; a wrong password gets no token.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{stack.base_url}/api/v2/dags", timeout=30)
        assert refused.value.code == 401
        # The Activation view (a plugin app, which Airflow does not authenticate) asks for the token itself.
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{stack.base_url}/cdp/activation/", timeout=30)
        assert anonymous.value.code == 401
        view = urllib.request.Request(f"{stack.base_url}/cdp/activation/",
                                      headers={"Authorization": f"Bearer {stack.token()}"})
        with urllib.request.urlopen(view, timeout=60) as page:
            assert page.status == 200 and "<title>Activation" in page.read().decode()
        with pytest.raises(AirflowError, match="POST /auth/token: HTTP 401"):
            stack._request("POST", "/auth/token", {"username": "cdp_e2e", "password": "wrong"}, None)
        # A process started with the stack's AIRFLOW_HOME (as a task's job would be) is found as a stray.
        straggler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                     env={**os.environ, "AIRFLOW_HOME": str(stack.home)})
        assert [pid for pid, _ in _stray_processes(f"AIRFLOW_HOME={stack.home}")
                if pid == straggler.pid] == [straggler.pid]
        straggler.kill()
        straggler.wait()
        # A run triggered through the REST API with a Param runs on the real scheduler: here its first task
        # fails at once (the workspace folder does not exist), and the run, its tasks and their logs say so.
        run_id = stack.trigger("cdp_daily", dt.date(2026, 11, 27), {"dry_run": True})
        assert stack.wait_for_run("cdp_daily", run_id, timeout=900) == "failed"
        run = stack.api("GET", f"/api/v2/dags/cdp_daily/dagRuns/{run_id}")
        assert (run["logical_date"], run["data_interval_start"], run["data_interval_end"], run["conf"]) == (
            "2026-11-27T00:00:00Z", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z", {"dry_run": True})
        states = stack.task_states("cdp_daily", run_id)
        assert states["list_destinations"] == "failed"
        summary = stack.failure_summary("cdp_daily", run_id)
        assert "'list_destinations': 'failed'" in summary and "task_id=list_destinations" in summary
    finally:
        stack.stop()
    assert stack.strays == []
    assert not stack.home.exists()
