"""Run one of the platform's Spark jobs (``jobs/<job>.py``) with the Spark provider.

Everything that depends on the machine (the Delta jars, the workspace and lake locations from the
environment) is resolved in :meth:`execute`, on the worker, never when the DAG file is parsed. The
connection (``spark_default``) decides how the job runs, so the same DAG runs unchanged on a cluster:

- connection type ``spark_connect`` (the embedded default, ``sc://127.0.0.1:15002``): the job module runs
  as a plain Python process, a Spark Connect client of that long-lived server (``CDP_SPARK_REMOTE`` in its
  environment: a token in the URL never reaches a command line or a log). A task costs a Python start plus
  its own work;
- connection type ``spark`` (``local[*]``, a standalone, YARN or Kubernetes master): one ``spark-submit``
  per task, an application of its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from airflow.exceptions import AirflowException, AirflowFailException
from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.common.compat.sdk import BaseHook

from cdp.settings import JOBS_DIR, Settings
from cdp.spark_conf import delta_jars, s3a_conf, s3a_needs, submit_conf

# cdp.job.EXIT_DETERMINISTIC, repeated here so that the DAG's parse does not import pyspark.
EXIT_DETERMINISTIC = 3
# cdp.spark.REMOTE_ENV, repeated for the same reason: the job's session connects to this URL.
REMOTE_ENV = "CDP_SPARK_REMOTE"
# cdp.job.FAILURE_FILE_ENV, repeated for the same reason: where the job writes the error it failed with.
FAILURE_FILE_ENV = "CDP_JOB_FAILURE_FILE"
# cdp.job.OUTPUT_FILE_ENV, likewise: what the job reports back (an asset event's extra, warnings).
OUTPUT_FILE_ENV = "CDP_JOB_OUTPUT_FILE"
# jobs.evaluate_audiences.MEMBERSHIP_OUTPUT and cdp.monitoring.warnings.OUTPUT_KEY, likewise.
MEMBERSHIP_OUTPUT = "membership"
WARNINGS_OUTPUT = "warnings"
CONNECT_CONN_TYPE = SparkConnectHook.conn_type
# What each deterministic error of cdp.errors is to the person reading the task's failure.
DETERMINISTIC_KINDS = {
    "WorkspaceError": "a workspace error",
    "BatchRejectedError": "a rejected batch",
    "DataQualityError": "a failed quality gate",
    "StepNotReadyError": "a step whose inputs are not committed",
}


def read_job_output(path: str) -> dict[str, Any]:
    """The JSON object a job wrote to its output file (empty when it wrote nothing or something unreadable)."""
    try:
        with open(path, encoding="utf-8") as output:
            text = output.read()
        value = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class CdpSparkJobOperator(SparkSubmitOperator):
    """Run ``jobs/<job>.py`` for the DAG run's date (its data interval start).

    :param job: the job module name in ``jobs/`` (validate, ingest, ...).
    :param dataset: passed as ``--dataset`` (per-dataset jobs; may be mapped).
    :param destination: passed as ``--destination`` (export; may be mapped).
    :param extra_args: further job arguments (e.g. ``["--stage", "ingest"]``).
    :param full_resync: comma-separated destination names whose export sends every current member
        (``--full-resync``), whatever was delivered before.
    :param dry_run_flag: rendered from the DAG's Param (``True`` / ``False``): when true the job gets ``--dry-run``
        (export: preview only, nothing delivered; the export gate: check the previews).
    :param alert_warnings: send the warnings the job reports (quality gates) on the workspace's alert channels
        (off where another task already sent them for the run date).

    With ``outlets=[AUDIENCE_MEMBERSHIP]`` (evaluate_audiences), the asset event's ``extra`` holds the run date and
    the membership table version the job committed (see :mod:`cdp_provider.assets`).
    """

    template_fields: Sequence[str] = (*SparkSubmitOperator.template_fields, "run_date", "dataset", "destination",
                                      "extra_args", "full_resync", "dry_run_flag")

    def __init__(
        self,
        *,
        job: str,
        dataset: str | None = None,
        destination: str | None = None,
        extra_args: list[str] | None = None,
        run_date: str = "{{ data_interval_start | ds }}",
        full_resync: str = "",
        dry_run_flag: str = "",
        alert_warnings: bool = True,
        conn_id: str = "spark_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", f"cdp-{job}")
        super().__init__(application=str(JOBS_DIR / f"{job}.py"), conn_id=conn_id, **kwargs)
        self.job = job
        self.dataset = dataset
        self.destination = destination
        self.extra_args = list(extra_args or [])
        self.run_date = run_date
        # Comma-separated destinations to resync in full (rendered from the DAG's Param).
        self.full_resync = full_resync
        self.dry_run_flag = dry_run_flag
        self.alert_warnings = alert_warnings
        self._failure_file = ""

    def job_arguments(self, run_id: str) -> list[str]:
        """The command-line arguments of the job (settings are read from the worker's environment)."""
        args = ["--run-date", self.run_date, "--run-id", run_id, *Settings.from_env().as_args()]
        if self.dataset:
            args += ["--dataset", self.dataset]
        if self.destination:
            args += ["--destination", self.destination]
            if self.destination in {d.strip() for d in (self.full_resync or "").split(",")}:
                args.append("--full-resync")
        if str(self.dry_run_flag).strip().lower() in {"true", "1"}:
            args.append("--dry-run")
        return args + self.extra_args

    def connection_env(self) -> dict[str, str]:
        """The ``AIRFLOW_CONN_*`` variables of the Airflow connections the job needs (an export's destination).

        Resolved here, in the Airflow task (which can read connections from the metadata database or a
        secrets backend), and handed to spark-submit's environment: never its command line. In yarn or
        kubernetes cluster deploy modes the provider turns env_vars into --conf settings, so there give the
        driver a secrets backend of its own instead.
        """
        if not self.destination:
            return {}
        from cdp.storage.connections import connection_env
        from cdp_provider.workspace import checked_workspace

        dest = checked_workspace().destinations.get(self.destination)
        connection = getattr(dest, "connection", None)
        return connection_env([connection]) if connection else {}

    def connect_url(self) -> str | None:
        """The Spark Connect URL when the connection is of type ``spark_connect`` (connect mode), else None."""
        conn = BaseHook.get_connection(self._conn_id)
        if conn.conn_type != CONNECT_CONN_TYPE:
            return None
        return SparkConnectHook(self._conn_id).get_connection_url()

    def execute(self, context: Any) -> None:
        self.application_args = self.job_arguments(str(context["run_id"]))
        handle, failure_file = tempfile.mkstemp(prefix="cdp-job-failure-", suffix=".json")
        os.close(handle)
        handle, output_file = tempfile.mkstemp(prefix="cdp-job-output-", suffix=".json")
        os.close(handle)
        self._failure_file = failure_file
        from cdp.storage.connections import lake_store_env

        # The lake's store (CDP_LAKE_CONNECTION, for a lake on S3): the driver's S3A, boto3 and delta-rs read it.
        self.env_vars = {**(self.env_vars or {}), **lake_store_env(), **self.connection_env(),
                         FAILURE_FILE_ENV: failure_file, OUTPUT_FILE_ENV: output_file}
        try:
            self._execute_job(context)
            output = read_job_output(output_file)
        finally:
            os.unlink(failure_file)
            os.unlink(output_file)
        self.publish_output(context, output)

    def publish_output(self, context: Any, output: dict[str, Any]) -> None:
        """What the job reported: the membership asset event's extra, and its warnings on the alert channels."""
        from cdp_provider.assets import AUDIENCE_MEMBERSHIP, MEMBERSHIP_VERSION, RUN_DATE

        if AUDIENCE_MEMBERSHIP in (self.outlets or []):
            reported = output.get(MEMBERSHIP_OUTPUT) or {}
            if not reported:
                # A driver on a cluster's machine writes its output there: the event says the run date only, and a
                # cadence run then activates the latest version.
                self.log.warning("the job reported no membership version: the asset event carries the run date only")
            extra = {RUN_DATE: str(reported.get("run_date") or self.run_date),
                     MEMBERSHIP_VERSION: reported.get("membership_version")}
            context["outlet_events"][AUDIENCE_MEMBERSHIP].extra = extra
            self.log.info("asset %s updated: %s", AUDIENCE_MEMBERSHIP.name, json.dumps(extra, sort_keys=True))
        warnings = output.get(WARNINGS_OUTPUT) or []
        if warnings and self.alert_warnings:
            from cdp_provider.alerts import send_warnings

            send_warnings(context, warnings)

    def _execute_job(self, context: Any) -> None:
        url = self.connect_url()
        if url is not None:
            self._run_connect_client(url)
            return
        # The application's JVM starts with the S3A connector when the lake or a dataset's landing is on S3
        # (CDP_LAKE, the workspace of CDP_WORKSPACE): its jars cannot be added once it runs.
        s3a = s3a_needs()
        if s3a:
            self.log.info("spark-submit with the S3A connector, for %s", "; ".join(s3a))
        self.jars = ",".join(delta_jars(s3a))
        # The store's endpoint may come from CDP_LAKE_CONNECTION (in env_vars): S3A is told it as a setting.
        self.conf = {**submit_conf(s3a), **s3a_conf(s3a, {**os.environ, **(self.env_vars or {})}),
                     **(self.conf or {})}
        self._driver_memory = self._driver_memory or os.environ.get("CDP_DRIVER_MEMORY", "2g")
        try:
            super().execute(context)
        except AirflowException as exc:
            # The hook reports the job's exit code; this one means the same inputs fail the same way again
            # (a workspace error, a rejected batch, a failed quality gate): fail now, do not retry.
            if f"Error code is: {EXIT_DETERMINISTIC}." in str(exc):
                raise self._deterministic_failure() from exc
            raise

    def _deterministic_failure(self) -> AirflowFailException:
        """The task's failure, naming the job's error when the job reported it (a driver on this machine)."""
        report: dict[str, str] = {}
        try:
            with open(self._failure_file, encoding="utf-8") as failure:
                text = failure.read()
            report = json.loads(text) if text else {}
        except (OSError, ValueError):
            # A cluster-mode driver writes the report on its own machine: the job's log still says it all.
            report = {}
        if not report.get("message"):
            return AirflowFailException(f"job {self.job} failed with an error that a retry cannot fix (see the "
                                        "job's log above); fix the cause, then clear the task")
        kind = DETERMINISTIC_KINDS.get(report.get("error", ""), "an error")
        return AirflowFailException(f"job {self.job} failed with {kind}, which a retry cannot fix (fix the cause, "
                                    f"then clear the task): {report['message']}")

    def _run_connect_client(self, url: str) -> None:
        """Run the job module as a Spark Connect client of ``url``, its output in the task log."""
        parsed = urlparse(url)
        server = f"sc://{parsed.netloc}"  # the URL's parameters may hold a token: messages name the server only
        try:
            # The client would retry an absent server for minutes: say at once what is wrong (Airflow retries).
            socket.create_connection((parsed.hostname or "", parsed.port or 15002), timeout=10).close()
        except OSError as exc:
            raise AirflowException(
                f"job {self.job}: the Spark Connect server {server} of connection {self._conn_id} does not answer "
                f"({exc.strerror or exc}); start it (scripts/spark_connect.py start, or make run / make airflow "
                "start it for you) or point the connection at a running one") from exc
        self.log.info("running %s as a Spark Connect client of %s", self.application, server)
        env = {**os.environ, **(self.env_vars or {}), REMOTE_ENV: url}
        self._client = subprocess.Popen(
            [sys.executable, str(self.application), *(self.application_args or [])], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1)
        assert self._client.stdout is not None
        for line in self._client.stdout:
            self.log.info("%s", line.rstrip("\n"))
        code = self._client.wait()
        if code == EXIT_DETERMINISTIC:
            raise self._deterministic_failure()
        if code != 0:
            raise AirflowException(f"job {self.job} exited with code {code} (see its log above); "
                                   "Airflow retries it when retries are left")

    def on_kill(self) -> None:
        client: subprocess.Popen[str] | None = getattr(self, "_client", None)
        if client is None:
            super().on_kill()
            return
        if client.poll() is None:
            # SIGTERM: cdp.job turns it into SystemExit, so the job removes its scratch files before it ends.
            client.terminate()
            try:
                client.wait(timeout=30)
            except subprocess.TimeoutExpired:
                client.kill()
