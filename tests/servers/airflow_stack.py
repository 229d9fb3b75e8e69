"""A real Airflow 3 deployment on 127.0.0.1 for the end-to-end tests: API server, scheduler and DAG processor
(and, on request, the triggerer) as separate processes, LocalExecutor, the repository's dags/ and plugins/.

Airflow 3's scheduler runs on SQLite (its workers reach the metadata only through the API server's execution
API; SequentialExecutor is gone and LocalExecutor is allowed on SQLite), so the metadata database is a SQLite
file in the stack's own AIRFLOW_HOME: no PostgreSQL server is needed here. Authentication is Airflow's
SimpleAuthManager with one admin user whose password is generated for the stack and kept in its passwords file
(AIRFLOW_HOME, mode 0600); :meth:`AirflowStack.api` gets a JWT from ``/auth/token`` with it.

Every process is started in a process group of its own and stopped by group; :meth:`AirflowStack.stop` then
finds any process still carrying this stack's AIRFLOW_HOME in its environment (a task runner or a job left
behind), kills it, and reports it in :attr:`AirflowStack.strays`, which the tests assert empty.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servers.processes import REPO_ROOT, free_port, stop_process_group, wait_for_http

log = logging.getLogger(__name__)

VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
USER = "cdp_e2e"
TERMINAL = {"success", "failed"}


class AirflowError(RuntimeError):
    """The stack could not start, or the API answered an error."""


def _stray_processes(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose environment holds ``marker`` (``AIRFLOW_HOME=<home>``)."""
    found = []
    needle = marker.encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if needle not in environ + b"\0":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cmdline:  # a zombie has no command line: it is gone, only not reaped yet
            found.append((int(entry.name), cmdline))
    return found


class AirflowStack:
    """Airflow's API server, scheduler and DAG processor on loopback, with their own AIRFLOW_HOME.

    :param env: extra environment for every process (the platform's CDP_* settings, connections).
    :param home: the AIRFLOW_HOME to use (default: a new temporary folder, removed by :meth:`stop`).
    :param triggerer: also start the triggerer (deferrable tasks and deadline alerts need it).
    :param parallelism: LocalExecutor's worker slots.
    :param task_log_level: Airflow's ``[logging] logging_level`` (the tasks' log level).
    :param database: Airflow's ``sql_alchemy_conn`` (default: SQLite in the AIRFLOW_HOME; enough for a run
        triggered through REST, but the scheduler and the API server's backfill endpoint can race for SQLite's
        lock, so the e2e gives a PostgreSQL URL: tests/servers/postgres.py).
    """

    def __init__(self, env: Mapping[str, str] | None = None, home: str | None = None, triggerer: bool = False,
                 parallelism: int = 2, task_log_level: str = "INFO", database: str | None = None) -> None:
        self.port = free_port()
        self._own_home = home is None
        self.home = Path(home or tempfile.mkdtemp(prefix="cdp-airflow-"))
        self.home.mkdir(parents=True, exist_ok=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._password = secrets.token_urlsafe(18)
        self._token: str | None = None
        self._token_at = 0.0
        self.triggerer = triggerer
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.strays: list[tuple[int, str]] = []
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database or f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            # One secret for every process: the scheduler signs the workers' tokens, the API server checks them.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            # Runs happen only when a test asks for them (REST trigger, backfill): the schedule's own run for the
            # last complete day (the machine's clock) would process a day the test never landed.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": task_log_level,
            **dict(env or {}),
        }

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 300.0) -> AirflowStack:
        """Migrate the metadata database, start the processes, wait until the API answers, the scheduler
        heartbeats and ``cdp_daily`` is parsed without import errors."""
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({USER: self._password}), encoding="utf-8")
        passwords.chmod(0o600)
        migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True,
                                 check=False, cwd=self.home)
        if migrate.returncode != 0:
            raise AirflowError(f"airflow db migrate failed ({migrate.returncode}): {migrate.stderr[-3000:]}")
        commands = {"api-server": [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(self.port)],
                    "scheduler": [AIRFLOW, "scheduler"], "dag-processor": [AIRFLOW, "dag-processor"]}
        if self.triggerer:
            commands["triggerer"] = [AIRFLOW, "triggerer"]
        (self.home / "processes").mkdir(exist_ok=True)
        try:
            for name, command in commands.items():
                out = open(self.process_log(name), "ab")  # noqa: SIM115 - handed to the child
                self.processes[name] = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                                        cwd=self.home)
                out.close()
            deadline = time.monotonic() + timeout
            wait_for_http(f"{self.base_url}/api/v2/monitor/health", self.processes["api-server"], "airflow api-server",
                          timeout=timeout)
            self._wait(lambda: self._healthy("scheduler"), deadline, "the scheduler to heartbeat")
            self._wait(self._dag_parsed, deadline, "cdp_daily to be parsed by the DAG processor")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process (its whole group), then kill and record any process left with this AIRFLOW_HOME."""
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            stop_process_group(process.pid, timeout=30)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()
        self.strays = _stray_processes(f"AIRFLOW_HOME={self.home}")
        for pid, _ in self.strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.strays:
            log.error("processes left after the Airflow stack stopped (killed): %s", self.strays)
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def process_log(self, name: str) -> Path:
        """Where a process of the stack (api-server, scheduler, ...) writes its output."""
        return self.home / "processes" / f"{name}.log"

    def _wait(self, ready: Any, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    tail = self.process_log(name).read_text(errors="replace")[-3000:]
                    raise AirflowError(f"airflow {name} exited with code {process.returncode} while waiting for "
                                       f"{what}; its output ends:\n{tail}")
            if ready():
                return
            time.sleep(1)
        raise AirflowError(f"timed out waiting for {what} (outputs in {self.home / 'processes'})")

    def _healthy(self, component: str) -> bool:
        health = self.api("GET", "/api/v2/monitor/health")
        return bool(health.get(component, {}).get("status") == "healthy")

    def _dag_parsed(self) -> bool:
        errors = self.api("GET", "/api/v2/importErrors")
        if errors.get("total_entries"):
            raise AirflowError("the DAG processor reports import errors: " + "; ".join(
                f"{e['filename']}: {e['stack_trace'][-1500:]}" for e in errors["import_errors"]))
        try:
            self.api("GET", "/api/v2/dags/cdp_daily")
        except AirflowError as exc:
            if "404" in str(exc):
                return False
            raise
        return True

    # -- REST API --------------------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT for the stack's admin user (``POST /auth/token``), renewed every 10 minutes."""
        if self._token is None or time.monotonic() - self._token_at > 600:
            answer = self._request("POST", "/auth/token", {"username": USER, "password": self._password}, None)
            self._token, self._token_at = str(answer["access_token"]), time.monotonic()
        return self._token

    def api(self, method: str, path: str, json_body: Any = None) -> Any:
        """Call the REST API as the admin user; return the decoded JSON answer (None when empty).

        Raises AirflowError naming the method, path, status and the API's answer when it is not 2xx.
        """
        return self._request(method, path, json_body, self.token())

    def _request(self, method: str, path: str, body: Any, token: str | None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text = answer.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise AirflowError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(text) if text.strip() else None

    # -- runs ------------------------------------------------------------------------------------------------

    def trigger(self, dag_id: str, run_date: dt.date, conf: Mapping[str, Any] | None = None,
                run_id: str | None = None, logical_date: dt.datetime | None = None) -> str:
        """Trigger a run of ``dag_id`` whose data interval is [run_date, run_date + 1) (its run date, for a
        daily DAG); return its run id.

        ``logical_date``: by default the interval's start, the slot the scheduled run and a backfill of that day
        use (so a backfill sees the day as run). A dry run takes another one (e.g. now, the UI's default): one
        logical date holds one run, and a dry run in the day's slot would make a backfill skip the real day.
        """
        start = dt.datetime.combine(run_date, dt.time(0), tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1)
        body: dict[str, Any] = {"logical_date": (logical_date or start).isoformat(),
                                "data_interval_start": start.isoformat(), "data_interval_end": end.isoformat(),
                                "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 3600.0) -> str:
        """Until the run is finished (a readiness wait, not a timed assertion); return its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = str(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in TERMINAL:
                return state
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AirflowError(f"airflow {name} exited with code {process.returncode} during run {run_id}")
            time.sleep(3)
        raise AirflowError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f}s")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of the DAG, in the order they started."""
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=start_date&limit=100")
        return list(answer["dag_runs"])

    def backfill(self, dag_id: str, first: dt.date, last: dt.date, reprocess: str = "none",
                 conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Create a backfill of the run dates ``first``..``last`` (``POST /api/v2/backfills``, one run at a time,
        oldest first; ``reprocess``: none, failed or completed); return the backfill."""
        start = dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC)
        end = dt.datetime.combine(last, dt.time(0), tzinfo=dt.UTC)
        return dict(self.api("POST", "/api/v2/backfills", {
            "dag_id": dag_id, "from_date": start.isoformat(), "to_date": end.isoformat(), "run_backwards": False,
            "dag_run_conf": dict(conf or {}), "reprocess_behavior": reprocess, "max_active_runs": 1}))

    def wait_for_backfill(self, backfill: Mapping[str, Any], timeout: float = 3600.0) -> list[dict[str, Any]]:
        """Until the backfill is completed (a readiness wait); return the DAG's runs of its logical dates, in the
        order they started."""
        deadline = time.monotonic() + timeout
        first = dt.datetime.fromisoformat(str(backfill["from_date"]))
        last = dt.datetime.fromisoformat(str(backfill["to_date"]))
        while time.monotonic() < deadline:
            if self.api("GET", f"/api/v2/backfills/{backfill['id']}").get("completed_at"):
                return [r for r in self.runs(str(backfill["dag_id"])) if r["logical_date"]
                        and first <= dt.datetime.fromisoformat(r["logical_date"]) <= last]
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AirflowError(f"airflow {name} exited with code {process.returncode} during backfill "
                                       f"{backfill['id']}")
            time.sleep(5)
        raise AirflowError(f"backfill {backfill['id']} did not complete within {timeout:.0f}s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``task_id`` (``task_id[map index]`` for a mapped one) -> state, for one run."""
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=200")
        return {(t["task_id"] if t["map_index"] < 0
                 else f"{t['task_id']}[{t.get('rendered_map_index') or t['map_index']}]"): str(t["state"])
                for t in answer["task_instances"]}

    def failure_summary(self, dag_id: str, run_id: str) -> str:
        """The tasks of a run that did not succeed, and the end of their log files: for a failing test's message."""
        states = self.task_states(dag_id, run_id)
        bad = {k: v for k, v in states.items() if v != "success"}
        logs = sorted(p for p in (self.home / "logs").rglob("*.log") if f"run_id={run_id}" in p.parts)
        tails = [f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs
                 if any(f"task_id={k.split('[')[0]}" in p.parts for k in bad)]
        return f"tasks not successful: {bad}\n" + "\n".join(tails[-4:])
