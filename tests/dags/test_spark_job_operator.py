"""The Spark job operator fails at once (no retry) on a job's deterministic error, and lets Airflow retry others."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from airflow.exceptions import AirflowException, AirflowFailException
from cdp_provider.operators.spark_job import CdpSparkJobOperator

from cdp.job import EXIT_DETERMINISTIC


def fake_spark_submit(folder: Path, exit_code: int) -> None:
    """A ``spark-submit`` first on PATH that records its arguments and exits with ``exit_code``."""
    script = folder / "spark-submit"
    script.write_text(f'#!/bin/sh\necho "$@" > "{folder}/args"\nexit {exit_code}\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(("exit_code", "raised"), [(EXIT_DETERMINISTIC, AirflowFailException), (1, AirflowException)])
def test_exit_code_decides_whether_airflow_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int,
                                                  raised: type[Exception]) -> None:
    fake_spark_submit(tmp_path, exit_code)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[1]"}')
    operator = CdpSparkJobOperator(task_id="ingest", job="ingest", dataset="web_events", run_date="2026-11-27")
    with pytest.raises(raised) as failed:
        operator.execute({"run_id": "manual__1"})
    assert (type(failed.value) is AirflowFailException) == (exit_code == EXIT_DETERMINISTIC)
    if exit_code == EXIT_DETERMINISTIC:
        assert str(failed.value) == ("job ingest failed with an error that a retry cannot fix (see the job's log "
                                     "above); fix the cause, then clear the task")
    args = (tmp_path / "args").read_text(encoding="utf-8").split()
    assert args[args.index("--run-date") + 1] == "2026-11-27"
    assert args[args.index("--dataset") + 1] == "web_events"
