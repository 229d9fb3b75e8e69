"""The one entry point every Spark job's ``main`` uses: arguments, session, prerequisites, run, metrics, exit code.

A job step (validate, ingest, resolve_identities, ...) writes several tables for its run date. If it
is killed between two commits the day is half-written, so each step records itself in the
``step_runs`` table: ``started`` before its first write, ``committed`` after its last one. A step
refuses to start unless every step it reads from is committed for the run date
(:class:`~cdp.errors.StepNotReadyError`), so a half-written day is never read; re-running the
killed step replaces its slices and commits it.

Exit codes tell Airflow whether a retry can help: :data:`EXIT_DETERMINISTIC` for errors that the
same inputs will raise again (a workspace error, a rejected batch, a failed quality gate, a step not
ready), which the operator fails at once without retrying; 1 for anything else (a lost executor, a
storage hiccup), which Airflow retries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from pyspark.sql import SparkSession

from cdp import small_tables
from cdp.errors import CdpError, StepNotReadyError
from cdp.lake import RUN_METRICS, STEP_RUNS, Lake
from cdp.run_context import RunContext, parse_job_args
from cdp.spark import get_session, is_remote
from cdp.spark_conf import s3a_needs
from cdp.workspace.loader import Workspace

log = logging.getLogger(__name__)

# spark-submit passes the Python driver's exit code on; the operator maps this one to "do not retry".
EXIT_DETERMINISTIC = 3
# When set (by the Airflow operator), a job that fails writes its error here as JSON {"error", "message"}, so
# the task's failure names it without parsing the log.
FAILURE_FILE_ENV = "CDP_JOB_FAILURE_FILE"
# When set (by the Airflow operator), what a job reports back besides its exit code is written here as one JSON
# object (see write_output): the version its commit made for an asset event, warnings for the alert channels.
OUTPUT_FILE_ENV = "CDP_JOB_OUTPUT_FILE"
STARTED = "started"
COMMITTED = "committed"


@dataclass(frozen=True)
class StepKey:
    """A step of one run date: its name and its scope (a dataset, a destination, or ``all``)."""

    step: str
    scope: str = "all"

    def __str__(self) -> str:
        return self.step if self.scope == "all" else f"{self.step}[{self.scope}]"


def mark_step(lake: Lake, run_date: dt.date, key: StepKey, status: str, run_id: str) -> None:
    """Record ``status`` for the step of the run date (replacing what an earlier attempt recorded)."""
    row = (run_date, key.step, key.scope, status, run_id, dt.datetime.now(dt.UTC))
    small_tables.replace_rows(lake.path(STEP_RUNS), STEP_RUNS, [row],
                              {"run_date": run_date, "step": key.step, "scope": key.scope})


def step_statuses(lake: Lake, run_date: dt.date) -> dict[StepKey, str]:
    """The status of every step recorded for the run date."""
    rows = small_tables.read_rows(lake.path(STEP_RUNS), {"run_date": run_date})
    return {StepKey(r["step"], r["scope"]): r["status"] for r in rows}


def record_metrics(lake: Lake, run_date: dt.date, step: str, scope: str, metrics: dict[str, int]) -> None:
    """Write this step's counts for the run date, replacing what an earlier attempt wrote."""
    rows = [(run_date, step, scope, name, int(value)) for name, value in sorted(metrics.items())]
    small_tables.replace_rows(lake.path(RUN_METRICS), RUN_METRICS, rows,
                              {"run_date": run_date, "step": step, "scope": scope})
    log.info("%s[%s] %s", step, scope, ", ".join(f"{k}={v}" for k, v in sorted(metrics.items())))


def check_prerequisites(lake: Lake, run_date: dt.date, step: StepKey, requires: Sequence[StepKey]) -> None:
    """Raise StepNotReadyError unless every step of ``requires`` is committed for the run date."""
    if not requires:
        return
    statuses = step_statuses(lake, run_date)
    problems = []
    for needed in requires:
        status = statuses.get(needed)
        if status is None:
            problems.append(f"{needed} has not run for {run_date}")
        elif status != COMMITTED:
            problems.append(f"{needed} started for {run_date} but did not finish (its tables may be half-written)")
    if problems:
        raise StepNotReadyError(f"{step} cannot start: " + "; ".join(problems)
                                + ". Run (or clear and re-run) those tasks first.")


def write_failure(exc: CdpError) -> None:
    """Write ``exc`` to the file named by ``CDP_JOB_FAILURE_FILE`` (when set) for the operator to report."""
    path = os.environ.get(FAILURE_FILE_ENV)
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"error": type(exc).__name__, "message": str(exc)}, out)
    except OSError as io_error:
        # The error itself is already in the log; a missing report must not hide it.
        log.warning("could not write the failure report %s: %s", path, io_error)


def write_output(key: str, value: object) -> None:
    """Set ``key`` to ``value`` (JSON) in the file named by ``CDP_JOB_OUTPUT_FILE`` (when set), for the operator.

    Nothing is written without the variable (a job run by hand): the value is in the job's log anyway.
    """
    path = os.environ.get(OUTPUT_FILE_ENV)
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as existing:
            text = existing.read()
        output = json.loads(text) if text else {}
    except (OSError, ValueError):
        output = {}
    output[key] = value
    try:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(output, out)
    except OSError as io_error:
        log.warning("could not write the job's output %s: %s", path, io_error)


def _terminate(signum: int, _frame: FrameType | None) -> NoReturn:
    # Turn SIGTERM (Airflow stopping the task) into SystemExit so that `finally` blocks clean up
    # temporary files (an export's rendered files hold PII) before the process ends.
    raise SystemExit(128 + signum)


def run_job(parser: argparse.ArgumentParser, argv: Sequence[str] | None, step: Callable[[argparse.Namespace], StepKey],
            body: Callable[[SparkSession, Workspace, RunContext, argparse.Namespace], dict[str, int] | None],
            requires: Callable[[argparse.Namespace, Workspace], Sequence[StepKey]] = lambda _a, _w: (),
            record: bool = True) -> None:
    """Parse the job's arguments, check its prerequisites, run ``body`` between the step's started and
    committed marks, record its metrics, and exit with a code that tells Airflow whether to retry.

    ``record`` False: a read-only step (a quality gate, the report) that writes no step mark.
    """
    signal.signal(signal.SIGTERM, _terminate)
    spark: SparkSession | None = None
    try:
        args, ctx, ws = parse_job_args(parser, argv)
        key = step(args)
        # The job's own lake and workspace say whether a session it starts needs the S3A connector.
        spark = get_session(f"cdp-{key.step}-{key.scope}", s3a=s3a_needs(ctx.settings))
        check_prerequisites(ctx.lake, ctx.run_date, key, requires(args, ws))
        if record:
            mark_step(ctx.lake, ctx.run_date, key, STARTED, ctx.run_id)
        metrics = body(spark, ws, ctx, args)
        if metrics is not None:
            record_metrics(ctx.lake, ctx.run_date, key.step, key.scope, metrics)
        if record:
            mark_step(ctx.lake, ctx.run_date, key, COMMITTED, ctx.run_id)
    except CdpError as exc:
        log.error("%s", exc)
        write_failure(exc)
        sys.exit(1 if exc.retryable else EXIT_DETERMINISTIC)
    finally:
        if spark is not None and is_remote(spark):
            # A Connect client releases its server-side session: its temp views, confs and caches go
            # with it, so the next job on the long-lived server starts from the server's settings.
            spark.stop()
