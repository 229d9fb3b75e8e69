"""The Spark job operator runs a job in both modes (Spark Connect client, spark-submit), fails at once (no retry)
on a job's deterministic error, and lets Airflow retry others."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from airflow.exceptions import AirflowException, AirflowFailException
from cdp_provider.operators.spark_job import CdpSparkJobOperator
from pyspark.sql import SparkSession

from cdp.destinations.ledger import record_destination_metrics
from cdp.job import EXIT_DETERMINISTIC
from cdp.lake import Lake
from cdp.spark_connect import ServerState, free_port


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


# Both modes of the operator run a real job: connect mode against the session's loopback Spark Connect server
# (the default a user gets), submit mode as a real spark-submit (a cluster's per-task application).
# Ten good records and one bad (9% of the batch, under the example's 10% rejected-share threshold).
CRM_CSV = ("crm_id,email,phone,first_name,last_name,birth_date,country,city,consent_marketing,updated_at\n"
           + "".join(f"C{n:03d},p{n}@example.com,,P{n},Archer,1990-04-01,FR,Paris,true,2026-11-27T08:00:00Z\n"
                     for n in range(1, 11))
           + "C099,not-an-email,,Dan,Dale,,DE,Berlin,true,2026-11-27T10:00:00Z\n")


def job_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_root: Path, connection: str) -> Path:
    """A landing zone with one CRM file for 2026-11-27, an empty lake, and ``connection`` as spark_default."""
    landing = tmp_path / "landing" / "crm" / "2026-11-27"
    landing.mkdir(parents=True)
    (landing / "crm.csv").write_text(CRM_CSV, encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", connection)
    monkeypatch.setenv("CDP_WORKSPACE", str(repo_root / "examples" / "retail"))
    monkeypatch.setenv("CDP_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("CDP_LANDING", str(tmp_path / "landing"))
    monkeypatch.setenv("CDP_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setenv("CDP_DRIVER_MEMORY", "1g")
    monkeypatch.setenv("CDP_SHUFFLE_PARTITIONS", "2")
    return tmp_path / "lake"


@pytest.mark.parametrize("mode", ["connect", "submit"])
def test_both_modes_run_the_job_and_write_the_same_tables(
        mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path, spark: SparkSession,
        request: pytest.FixtureRequest) -> None:
    if mode == "connect":
        port = request.getfixturevalue("spark_connect_server").port
        connection = json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": port})
    else:
        connection = json.dumps({"conn_type": "spark", "host": "local[1]"})
        # The provider runs `spark-submit` from PATH: pyspark's, in the venv (make puts it first on PATH).
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    lake = job_environment(monkeypatch, tmp_path, repo_root, connection)
    operator = CdpSparkJobOperator(task_id="validate", job="validate", dataset="crm_profiles", run_date="2026-11-27")
    assert (operator.connect_url() is not None) == (mode == "connect")
    operator.execute({"run_id": "manual__1"})

    staged = spark.read.format("delta").load(str(lake / "staging" / "crm_profiles"))
    assert sorted((r["crm_id"], r["email"]) for r in staged.collect()) == [
        (f"C{n:03d}", f"p{n}@example.com") for n in range(1, 11)]
    quarantined = spark.read.format("delta").load(str(lake / "quarantine")).collect()
    assert [(r["row_number"], [x["code"] for x in r["reasons"]]) for r in quarantined] == [(12, ["bad_format"])]
    steps = spark.read.format("delta").load(str(lake / "step_runs")).collect()
    assert [(r["step"], r["scope"], r["status"], r["run_id"]) for r in steps] == [
        ("validate", "crm_profiles", "committed", "manual__1")]


def connect_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_root: Path, port: int) -> Path:
    """:func:`job_environment` with spark_default pointing at the loopback Spark Connect server on ``port``."""
    connection = json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": port})
    return job_environment(monkeypatch, tmp_path, repo_root, connection)


def test_connect_mode_fails_at_once_when_a_step_before_did_not_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path, spark_connect_server: ServerState) -> None:
    connect_environment(monkeypatch, tmp_path, repo_root, spark_connect_server.port)
    operator = CdpSparkJobOperator(task_id="ingest", job="ingest", dataset="no_such_dataset", run_date="2026-11-27")
    with pytest.raises(AirflowFailException) as failed:
        operator.execute({"run_id": "manual__1"})
    assert str(failed.value) == (
        "job ingest failed with a step whose inputs are not committed, which a retry cannot fix (fix the cause, then "
        "clear the task): ingest[no_such_dataset] cannot start: validate[no_such_dataset] has not run for "
        "2026-11-27. Run (or clear and re-run) those tasks first.")


def test_a_workspace_error_fails_at_once_naming_the_file_and_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path, spark_connect_server: ServerState) -> None:
    connect_environment(monkeypatch, tmp_path, repo_root, spark_connect_server.port)
    workspace = tmp_path / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    config = workspace / "workspace.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("max_rejected_share: 0.10",
                                                                 "max_rejected_share: 2"), encoding="utf-8")
    monkeypatch.setenv("CDP_WORKSPACE", str(workspace))
    operator = CdpSparkJobOperator(task_id="validate", job="validate", dataset="crm_profiles", run_date="2026-11-27")
    with pytest.raises(AirflowFailException) as failed:
        operator.execute({"run_id": "manual__1"})
    assert str(failed.value) == (
        "job validate failed with a workspace error, which a retry cannot fix (fix the cause, then clear the task): "
        "workspace has 1 problem(s):\n  - workspace.yaml: guardrails.max_rejected_share: Input should be less than "
        "or equal to 1")


def test_a_rejected_batch_fails_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path, spark_connect_server: ServerState) -> None:
    connect_environment(monkeypatch, tmp_path, repo_root, spark_connect_server.port)
    # Two bad records of eleven (18%), over the example's 10% threshold.
    bad = CRM_CSV.replace("C001,p1@example.com", "C001,not-an-email-either")
    (tmp_path / "landing" / "crm" / "2026-11-27" / "crm.csv").write_text(bad, encoding="utf-8")
    operator = CdpSparkJobOperator(task_id="validate", job="validate", dataset="crm_profiles", run_date="2026-11-27")
    with pytest.raises(AirflowFailException) as failed:
        operator.execute({"run_id": "manual__1"})
    assert str(failed.value) == (
        "job validate failed with a rejected batch, which a retry cannot fix (fix the cause, then clear the task): "
        "dataset crm_profiles: 2 of 11 records rejected (18.2% > 10.0% allowed); top reasons: bad_format 2")


def test_a_failed_quality_gate_fails_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path, spark: SparkSession,
        spark_connect_server: ServerState) -> None:
    lake = connect_environment(monkeypatch, tmp_path, repo_root, spark_connect_server.port)
    # A destination whose counts do not reconcile: 5 received, 3 activated, nothing excluded or failed.
    record_destination_metrics(Lake(str(lake)), (
        "marketing_landing", dt.date(2026, 11, 27), "manual__1", "local", "full", None, 5, 3, {}, 0, 0, 0, 0,
        "delivered", None), "marketing_landing", dt.date(2026, 11, 27))
    operator = CdpSparkJobOperator(task_id="check_exports", job="check_quality", extra_args=["--stage", "exports"],
                                   run_date="2026-11-27")
    with pytest.raises(AirflowFailException) as failed:
        operator.execute({"run_id": "manual__1"})
    assert str(failed.value) == (
        "job check_quality failed with a failed quality gate, which a retry cannot fix (fix the cause, then clear the "
        "task): data-quality check 'exports' failed 2 of 2 expectations; the run stops here so that bad data does not "
        "flow on:\n"
        "  - destination_counts: expect_column_values_to_be_null(column='count_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 100.0, "unexpected_samples": ["marketing_landing: received 5 '
        '!= activated 3 + excluded 0 + failed 0"]}\n'
        "  - destination_counts: expect_column_values_to_be_null(column='rows_problem') FAILED — "
        '{"unexpected_count": 1, "unexpected_percent": 100.0, "unexpected_samples": ["marketing_landing: activated 3 '
        'but the delivered files hold 0 row(s)"]}')


def test_connect_mode_retries_when_the_server_is_unreachable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    # A port nothing listens on: the job cannot reach its server, an error of the environment that a retry may fix.
    port = free_port()
    connection = json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": port,
                             "password": "s3cret-token"})
    job_environment(monkeypatch, tmp_path, repo_root, connection)
    operator = CdpSparkJobOperator(task_id="ingest", job="ingest", dataset="crm_profiles", run_date="2026-11-27")
    with pytest.raises(AirflowException) as failed:
        operator.execute({"run_id": "manual__1"})
    assert type(failed.value) is AirflowException
    assert str(failed.value) == (
        f"job ingest: the Spark Connect server sc://127.0.0.1:{port} of connection spark_default does not answer "
        "(Connection refused); start it (scripts/spark_connect.py start, or make run / make airflow start it for "
        "you) or point the connection at a running one")


def test_submit_mode_loads_the_s3a_connector_only_for_a_workspace_landing_on_s3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    # The application's JVM cannot load jars once it runs: spark-submit gets them when a dataset lands on S3.
    fake_spark_submit(tmp_path, 0)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[1]"}')
    monkeypatch.setenv("CDP_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("CDP_S3_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret-key")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "CDP_S3_PATH_STYLE", "CDP_LAKE_CONNECTION"):
        monkeypatch.delenv(name, raising=False)

    def s3a_arguments(workspace: Path) -> list[str]:
        monkeypatch.setenv("CDP_WORKSPACE", str(workspace))
        CdpSparkJobOperator(task_id="validate", job="validate", dataset="web_events",
                            run_date="2026-11-27").execute({"run_id": "manual__1"})
        args = (tmp_path / "args").read_text(encoding="utf-8").split()
        assert not any("s3cret-key" in a for a in args)
        jars = [Path(j).name for j in args[args.index("--jars") + 1].split(",") if "/s3a/" in j]
        return jars + [a for a in args if a.startswith("spark.hadoop.fs.s3a.")]

    assert s3a_arguments(repo_root / "examples" / "retail") == []
    workspace = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    web = workspace / "datasets" / "web_events.yaml"
    web.write_text(web.read_text(encoding="utf-8").replace("{type: local,", "{type: s3, bucket: landing,"),
                   encoding="utf-8")
    assert s3a_arguments(workspace) == [
        "bundle-2.29.52.jar", "hadoop-aws-3.4.2.jar", "spark.hadoop.fs.s3a.impl=org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region=us-east-1", "spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access=true", "spark.hadoop.fs.s3a.connection.ssl.enabled=false"]
