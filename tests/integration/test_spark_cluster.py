"""The example's day on a real Spark standalone cluster with the lake on S3, against the same day in local mode.

Both claims of the scale-out are made by the same runs, on purpose (separate day-long runs would double the
suite's cost):

- the jobs are Spark Connect clients of the jobs' server started with a standalone master
  (``spark://127.0.0.1:<port>``: a master and a worker from the installed pyspark, loopback, free ports), so
  every task of every job runs in the worker's executor, not in the server's JVM;
- the lake is ``s3a://`` on the moto S3 server, written and read through Hadoop's S3A connector (the jars
  ``make setup`` resolves into ``.jars/s3a``), the export's staged parts included (written by the executor into
  the bucket, fetched by the driver for the transport).

Each step runs first in local mode (the session-wide local SparkSession, a lake folder), then on the cluster;
the results must be the same rows and byte-identical files. Two tests share the servers and the two lakes: the
first ingests one dataset, the second (which needs the first) the rest of the day. On the cluster one dataset
(``loyalty_members``, Parquet) lands on S3 (``source.type: s3``, the bucket of the lake): the executor reads its
objects in place through S3A, the driver only streams them for their hashes. Honest limits: the other datasets
land in a local folder, which the executor reads because worker and driver share this machine (on a real cluster
land files on S3 too); the worker has two cores and the data one generated day of 12 persons, the smallest that
goes through every step.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from servers.processes import S3_KEY_ID, S3_SECRET, MotoServer
from servers.spark_cluster import SparkStandaloneCluster

from cdp.delta_io import read_table
from cdp.generator import generate
from cdp.lake import (
    AUDIENCE_MEMBERSHIP,
    BATCH_LEDGER,
    DATASET,
    IDENTITY_MAP,
    PROFILES,
    QUARANTINE,
    STAGING,
    Lake,
)
from cdp.run_context import RunContext
from cdp.schema_evolution import read_delta_schema
from cdp.settings import Settings
from cdp.spark import get_session, is_remote
from cdp.spark_conf import S3A_JARS_DIR
from cdp.spark_connect import ServerState, free_port, start_server, stop_server
from cdp.workspace.loader import Workspace, load_workspace
from jobs import build_profiles, evaluate_audiences, export, ingest, resolve_identities, validate

DAY = dt.date(2026, 11, 25)
BUCKET = "cdp-cluster-lake"
DESTINATION = "marketing_landing"  # type: local: the files land in the exports folder

pytestmark = pytest.mark.skipif(not any(S3A_JARS_DIR.glob("hadoop-aws-*.jar")),
                                reason=f"no hadoop-aws jar in {S3A_JARS_DIR}: run `make setup`")


FIRST = "crm_profiles"  # the ingest test: one dataset (CSV, profile and identity enabled)
LANDED_ON_S3 = "loyalty_members"  # on the cluster, landed in the bucket and read in place (Parquet)


def context(settings: Settings) -> tuple[Workspace, RunContext]:
    ws = load_workspace(settings.workspace, settings)
    return ws, RunContext(run_date=DAY, run_id="scheduled__2026-11-25", settings=settings)


def run_ingest(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """validate and ingest of the first dataset, by the jobs' own ``run`` functions."""
    ws, ctx = context(settings)
    return {f"validate[{FIRST}]": validate.run(spark, ws, ctx, FIRST),
            f"ingest[{FIRST}]": ingest.run(spark, ws, ctx, FIRST)}


def run_rest_of_day(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """The other steps of cdp_daily that compute and deliver, in DAG order: the other datasets, identities,
    profiles, audiences, one file export."""
    ws, ctx = context(settings)
    counts: dict[str, Any] = {}
    others = [d for d in sorted(ws.datasets) if d != FIRST]
    for dataset in others:
        counts[f"validate[{dataset}]"] = validate.run(spark, ws, ctx, dataset)
    for dataset in others:
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


def ingest_results(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    lake = Lake(settings.lake)
    return {"dataset": table_rows(spark, lake.path(DATASET, FIRST)),
            "staging": table_rows(spark, lake.path(STAGING, FIRST)),
            "quarantine": table_rows(spark, lake.path(QUARANTINE)),
            "batch_ledger": table_rows(spark, lake.path(BATCH_LEDGER))}


def day_results(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    lake = Lake(settings.lake)
    out: dict[str, Any] = {t.name: table_rows(spark, lake.path(t)) for t in (PROFILES, IDENTITY_MAP,
                                                                               AUDIENCE_MEMBERSHIP)}
    exports = Path(settings.exports)
    out["files"] = {str(p.relative_to(exports)): p.read_bytes() for p in sorted(exports.rglob("*")) if p.is_file()}
    return out


@contextlib.contextmanager
def cluster_client(state: ServerState, s3_env: dict[str, str]) -> Iterator[SparkSession]:
    """A Spark Connect client of the cluster's server, with the lake's environment, for one block.

    ``SPARK_CONNECT_MODE_ENABLED`` makes pyspark.sql.functions build Connect columns: set only inside the
    block, so that the local-mode steps around it get classic columns (see test_streaming_connect.py).
    """
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3_env.items():
            patch.setenv(key, value)  # the driver's boto3 (staged export parts) and delta-rs read these
        patch.setenv("CDP_SPARK_REMOTE", state.url)
        patch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
        client = get_session("cdp-test-cluster")
        try:
            assert is_remote(client)
            yield client
        finally:
            client.stop()


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
    with SparkStandaloneCluster(cores=2, memory="1500m", env=s3_lake_env) as cluster:
        state = ServerState(tmp_path_factory.mktemp("cluster-connect"), free_port())
        with pytest.MonkeyPatch.context() as patch:
            for key, value in s3_lake_env.items():
                patch.setenv(key, value)  # the server's environment and settings (s3a_conf, s3a_jars)
            start_server(state, master=cluster.master_url, driver_memory="1g")
        try:
            yield cluster, state
        finally:
            stop_server(state)


@pytest.fixture(scope="module")
def two_lakes(spark: SparkSession, landing: Path, repo_root: Path, tmp_path_factory: pytest.TempPathFactory,
              s3_lake_env: dict[str, str], moto_server: MotoServer) -> tuple[Settings, Settings]:
    """The same day in local mode (a lake folder) and on the cluster (the lake on S3, and LANDED_ON_S3's files in
    the bucket, its source ``type: s3`` in a copy of the example workspace)."""
    workspace = str(repo_root / "examples" / "retail")
    base = tmp_path_factory.mktemp("cluster-day")
    on_s3 = base / "workspace-landing-on-s3"
    shutil.copytree(workspace, on_s3)
    spec = on_s3 / "datasets" / f"{LANDED_ON_S3}.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace(
        '{type: local, path: "loyalty/{date}"}', f'{{type: s3, bucket: {BUCKET}, path: "landing/loyalty/{{date}}"}}'),
        encoding="utf-8")
    for path in sorted((landing / "loyalty" / DAY.isoformat()).iterdir()):
        moto_server.client().upload_file(str(path), BUCKET, f"landing/loyalty/{DAY.isoformat()}/{path.name}")
    local = Settings(workspace=workspace, lake=str(base / "lake"), landing=str(landing),
                     exports=str(base / "local-exports"))
    remote = Settings(workspace=str(on_s3), lake=s3_lake_env["CDP_LAKE"], landing=str(landing),
                      exports=str(base / "cluster-exports"))
    return local, remote


def test_ingest_on_a_standalone_cluster_with_the_lake_on_s3_matches_local_mode(
        spark: SparkSession, two_lakes: tuple[Settings, Settings], moto_server: MotoServer,
        s3_lake_env: dict[str, str], cluster_connect: tuple[SparkStandaloneCluster, ServerState]) -> None:
    cluster, state = cluster_connect
    local, remote = two_lakes
    local_counts = run_ingest(spark, local)
    expected = ingest_results(spark, local)
    with cluster_client(state, s3_lake_env) as client:
        cluster_counts = run_ingest(client, remote)
        actual = ingest_results(client, remote)

    assert cluster_counts == local_counts
    assert expected["dataset"], "local mode ingested no record"
    assert actual == expected
    # The work ran on the cluster: the server is the master's one application, with the worker's 2 cores.
    apps = cluster.status().get("activeapps", [])
    assert [(a["name"], a["cores"]) for a in apps] == [("cdp-spark-connect", 2)]
    # The tables are in the bucket (Delta logs written through S3A).
    keys = {o["Key"] for page in moto_server.client().get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="lake/") for o in page.get("Contents", [])}
    assert f"lake/datasets/{FIRST}/_delta_log/00000000000000000000.json" in keys
    # `cdp validate --lake` reads the schema of a dataset table on S3 from its Delta log, without Spark.
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3_lake_env.items():
            patch.setenv(key, value)
        stored = read_delta_schema(Lake(remote.lake).path(DATASET, FIRST))
    assert stored is not None
    assert stored == read_delta_schema(Lake(local.lake).path(DATASET, FIRST))


def test_the_rest_of_the_day_on_the_cluster_matches_local_mode(
        spark: SparkSession, two_lakes: tuple[Settings, Settings], moto_server: MotoServer,
        s3_lake_env: dict[str, str], cluster_connect: tuple[SparkStandaloneCluster, ServerState]) -> None:
    _, state = cluster_connect
    local, remote = two_lakes
    local_counts = run_rest_of_day(spark, local)
    expected = day_results(spark, local)
    with cluster_client(state, s3_lake_env) as client:
        cluster_counts = run_rest_of_day(client, remote)
        actual = day_results(client, remote)

    assert cluster_counts == local_counts
    assert cluster_counts[f"validate[{LANDED_ON_S3}]"]["rows_valid"] > 0
    assert expected["files"], "the local run exported no file"
    assert sorted(actual["files"]) == sorted(expected["files"])
    for name, data in expected["files"].items():
        assert actual["files"][name] == data, f"{name} differs between the cluster and local mode"
    for table in (PROFILES.name, IDENTITY_MAP.name, AUDIENCE_MEMBERSHIP.name):
        assert expected[table], f"local mode wrote no {table} row"
        assert actual[table] == expected[table], f"{table} differs between the cluster and local mode"
    # The export's parts were staged in the bucket (written by the executor) and removed once delivered.
    keys = {o["Key"] for page in moto_server.client().get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="lake/") for o in page.get("Contents", [])}
    assert "lake/profiles/_delta_log/00000000000000000000.json" in keys
    assert not any(k.startswith("lake/_export_staging/") for k in keys), "staged export parts were left behind"
    # LANDED_ON_S3 was read from the bucket in place: its ledger names the objects, with the counts and content
    # hashes of the same files read locally, and its staged records name them too.
    with cluster_client(state, s3_lake_env) as client:
        on_cluster = landed_files(client, remote)
        sources = {r[0] for r in read_table(client, Lake(remote.lake).path(STAGING, LANDED_ON_S3))
                   .select("_source_file").distinct().collect()}
    assert on_cluster == [(f"s3://{BUCKET}/landing/loyalty/{DAY.isoformat()}/{name}", *rest)
                          for name, *rest in landed_files(spark, local)]
    assert sources == {source for source, *_ in on_cluster}


def landed_files(spark: SparkSession, settings: Settings) -> list[tuple[Any, ...]]:
    """LANDED_ON_S3's batch-ledger rows: (source file, or its name for a local file; rows read, valid; sha256)."""
    rows = (read_table(spark, Lake(settings.lake).path(BATCH_LEDGER)).where(f"dataset = '{LANDED_ON_S3}'")
            .select("source_file", "rows_read", "rows_valid", "sha256").collect())
    return sorted((r[0] if r[0].startswith("s3://") else Path(r[0]).name, r[1], r[2], r[3]) for r in rows)
