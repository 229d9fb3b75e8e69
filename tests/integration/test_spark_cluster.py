"""One day of the example on a real Spark standalone cluster with the lake on S3, against the same day in local mode.

One run makes both claims of the scale-out, on purpose (a second day-long run would double the suite's cost):

- the jobs are Spark Connect clients of the jobs' server started with a standalone master
  (``spark://127.0.0.1:<port>``: a master and a worker from the installed pyspark, loopback, free ports), so
  every task of every job runs in the worker's executor, not in the server's JVM;
- the lake is ``s3a://`` on the moto S3 server, written and read through Hadoop's S3A connector (the jars
  ``make setup`` resolves into ``.jars/s3a``), the export's staged parts included (written by the executor into
  the bucket, fetched by the driver for the transport).

The same steps run first in local mode (the session-wide local SparkSession, a lake folder). The exported files
must be byte-identical and the profiles, identity map and memberships the same rows. Honest limits: the landing
zone is a local folder, which the executor reads because worker and driver share this machine (on a real
cluster land files on S3: ``source.type: s3``); the worker has two cores and the data one generated day of 12
persons, the smallest that goes through every step.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from servers.processes import S3_KEY_ID, S3_SECRET, MotoServer
from servers.spark_cluster import SparkStandaloneCluster

from cdp.delta_io import read_table
from cdp.generator import generate
from cdp.lake import AUDIENCE_MEMBERSHIP, DATASET, IDENTITY_MAP, PROFILES, Lake
from cdp.run_context import RunContext
from cdp.schema_evolution import read_delta_schema
from cdp.settings import Settings
from cdp.spark import get_session, is_remote
from cdp.spark_conf import S3A_JARS_DIR
from cdp.spark_connect import ServerState, free_port, start_server, stop_server
from cdp.workspace.loader import load_workspace
from jobs import build_profiles, evaluate_audiences, export, ingest, resolve_identities, validate

DAY = dt.date(2026, 11, 25)
BUCKET = "cdp-cluster-lake"
DESTINATION = "marketing_landing"  # type: local: the files land in the exports folder

pytestmark = pytest.mark.skipif(not any(S3A_JARS_DIR.glob("hadoop-aws-*.jar")),
                                reason=f"no hadoop-aws jar in {S3A_JARS_DIR}: run `make setup`")


def run_day(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """The steps of cdp_daily that compute and deliver (validate, ingest, identities, profiles, audiences,
    one file export), in DAG order, by the jobs' own ``run`` functions."""
    ws = load_workspace(settings.workspace, settings)
    ctx = RunContext(run_date=DAY, run_id="scheduled__2026-11-25", settings=settings)
    counts: dict[str, Any] = {}
    for dataset in sorted(ws.datasets):
        counts[f"validate[{dataset}]"] = validate.run(spark, ws, ctx, dataset)
    for dataset in sorted(ws.datasets):
        counts[f"ingest[{dataset}]"] = ingest.run(spark, ws, ctx, dataset)
    counts["resolve_identities"] = resolve_identities.run(spark, ws, ctx)
    counts["build_profiles"] = build_profiles.run(spark, ws, ctx)
    counts["evaluate_audiences"] = evaluate_audiences.run(spark, ws, ctx)
    counts[f"export[{DESTINATION}]"] = export.run(spark, ws, ctx, DESTINATION)
    return counts


def table_rows(spark: SparkSession, path: str) -> list[str]:
    """Every row of a table as sorted JSON (maps and arrays included), sorted: order-free equality."""
    return sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str)
                  for r in read_table(spark, path).collect())


def results(spark: SparkSession, settings: Settings, datasets: list[str]) -> dict[str, Any]:
    lake = Lake(settings.lake)
    out: dict[str, Any] = {t.name: table_rows(spark, lake.path(t)) for t in (PROFILES, IDENTITY_MAP,
                                                                               AUDIENCE_MEMBERSHIP)}
    for dataset in datasets:
        out[f"datasets/{dataset}"] = read_table(spark, lake.path(DATASET, dataset)).count()
    exports = Path(settings.exports)
    out["files"] = {str(p.relative_to(exports)): p.read_bytes() for p in sorted(exports.rglob("*")) if p.is_file()}
    return out


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cluster-landing")
    generate(folder, profiles=12, days=1, seed=13, end_date=DAY)
    return folder


@pytest.fixture(scope="module")
def s3_lake_env(moto_server: MotoServer) -> Iterator[dict[str, str]]:
    """The environment of an s3a:// lake on moto: where the store is and its (test) credentials."""
    client = moto_server.client()
    client.create_bucket(Bucket=BUCKET)
    env = {"CDP_LAKE": f"s3a://{BUCKET}/lake", "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
           "AWS_REGION": "us-east-1", "CDP_S3_ENDPOINT": moto_server.url}
    yield env


@pytest.fixture(scope="module")
def cluster_connect(s3_lake_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[SparkStandaloneCluster, ServerState]]:
    """A standalone master and worker, and the jobs' Connect server whose master is that cluster."""
    # The executors take their S3 credentials from the worker's environment (inherited from it).
    with SparkStandaloneCluster(cores=2, memory="1500m", env=s3_lake_env) as cluster, \
            pytest.MonkeyPatch.context() as patch:
        for key, value in s3_lake_env.items():
            patch.setenv(key, value)  # the server's environment and settings (s3a_conf, s3a_jars)
        state = ServerState(tmp_path_factory.mktemp("cluster-connect"), free_port())
        start_server(state, master=cluster.master_url, driver_memory="1g")
        try:
            yield cluster, state
        finally:
            stop_server(state)


def test_a_day_on_a_standalone_cluster_with_the_lake_on_s3_matches_local_mode(
        spark: SparkSession, landing: Path, tmp_path: Path, repo_root: Path, moto_server: MotoServer,
        s3_lake_env: dict[str, str], cluster_connect: tuple[SparkStandaloneCluster, ServerState],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, state = cluster_connect
    workspace = str(repo_root / "examples" / "retail")
    local = Settings(workspace=workspace, lake=str(tmp_path / "lake"), landing=str(landing),
                     exports=str(tmp_path / "local-exports"))
    local_counts = run_day(spark, local)
    datasets = sorted(load_workspace(workspace, local).datasets)
    expected = results(spark, local, datasets)

    for key, value in s3_lake_env.items():
        monkeypatch.setenv(key, value)  # the driver's boto3 (staged export parts) and delta-rs read these
    monkeypatch.setenv("CDP_SPARK_REMOTE", state.url)
    # Connect columns for this test only (see the connect_spark fixture of test_streaming_connect.py).
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    remote = Settings(workspace=workspace, lake=s3_lake_env["CDP_LAKE"], landing=str(landing),
                      exports=str(tmp_path / "cluster-exports"))
    client = get_session("cdp-test-cluster")
    try:
        assert is_remote(client)
        cluster_counts = run_day(client, remote)
        actual = results(client, remote, datasets)
    finally:
        client.stop()

    assert cluster_counts == local_counts
    assert expected["files"], "the local run exported no file"
    assert sorted(actual["files"]) == sorted(expected["files"])
    for name, data in expected["files"].items():
        assert actual["files"][name] == data, f"{name} differs between the cluster and local mode"
    for table in (PROFILES.name, IDENTITY_MAP.name, AUDIENCE_MEMBERSHIP.name):
        assert expected[table], f"local mode wrote no {table} row"
        assert actual[table] == expected[table], f"{table} differs between the cluster and local mode"
    assert {k: v for k, v in actual.items() if k.startswith("datasets/")} == {
        k: v for k, v in expected.items() if k.startswith("datasets/")}

    # The work ran on the cluster: the server is the master's application, its executor on the worker.
    apps = cluster.status().get("activeapps", [])
    assert [a["name"] for a in apps] == ["cdp-spark-connect"]
    assert apps[0]["cores"] == 2
    # The lake is in the bucket (Delta logs written through S3A), and nothing of it on the driver's disk.
    keys = {o["Key"] for page in moto_server.client().get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="lake/") for o in page.get("Contents", [])}
    assert "lake/profiles/_delta_log/00000000000000000000.json" in keys
    assert not any(k.startswith("lake/_export_staging/") for k in keys), "staged export parts were left behind"
    assert not Path("s3a:").exists() and not (Path(os.getcwd()) / "s3a:").exists()
    # `cdp validate --lake` reads the schema of a dataset table on S3 from its Delta log, without Spark.
    stored = read_delta_schema(Lake(remote.lake).path(DATASET, "crm_profiles"))
    assert stored is not None
    assert stored == read_delta_schema(Lake(local.lake).path(DATASET, "crm_profiles"))
