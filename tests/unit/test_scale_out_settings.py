"""Settings of the scale-out: the S3A connector for an s3a:// lake or datasets landing on S3, checkpoints off the
driver's disk, the lake store's connection, delta-rs options. No secret ever becomes a Spark setting or a
command-line argument."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cdp import spark_conf
from cdp.schema_evolution import object_store_options
from cdp.settings import Settings
from cdp.spark_conf import s3a_conf, s3a_jars, s3a_needs
from cdp.spark_connect import ServerState, checkpoint_dir, server_command
from cdp.storage.connections import lake_store_env

SECRET = "unit-test-secret-9Qx"
LAKE_ON_S3 = ["the lake s3a://lake-bucket/lake"]


def settings(workspace: Path, lake: str = "/data/lake") -> Settings:
    return Settings(workspace=str(workspace), lake=lake, landing="/data/landing", exports="/data/exports")


def workspace_landing_on_s3(repo_root: Path, folder: Path) -> Path:
    """A copy of the example workspace whose web_events land in a bucket (the other datasets stay local)."""
    shutil.copytree(repo_root / "examples" / "retail", folder)
    web = folder / "datasets" / "web_events.yaml"
    web.write_text(web.read_text(encoding="utf-8").replace(
        'source: {type: local, path: "web/{date}"}', 'source: {type: s3, bucket: landing-bucket, path: "web/{date}/"}'),
        encoding="utf-8")
    return folder


def test_a_local_lake_and_local_landing_get_no_s3a_setting_nor_jar(repo_root: Path) -> None:
    needs = s3a_needs(settings(repo_root / "examples" / "retail"))
    assert needs == []
    assert s3a_conf(needs, {"CDP_S3_ENDPOINT": "http://127.0.0.1:9000"}) == {}
    assert s3a_jars(needs) == []
    assert s3a_needs(settings(repo_root / "examples" / "retail", "file:///data/lake")) == []


def test_what_needs_the_s3a_connector_the_lake_and_each_dataset_landing_on_s3(repo_root: Path,
                                                                             tmp_path: Path) -> None:
    workspace = workspace_landing_on_s3(repo_root, tmp_path / "ws")
    assert s3a_needs(settings(workspace)) == ["dataset web_events (lands in s3://landing-bucket/web/{date})"]
    assert s3a_needs(settings(workspace, "s3a://lake-bucket/lake")) == [
        "the lake s3a://lake-bucket/lake", "dataset web_events (lands in s3://landing-bucket/web/{date})"]
    assert s3a_needs(settings(repo_root / "examples" / "retail", "s3a://lake-bucket/lake")) == LAKE_ON_S3
    # A dataset file that cannot be read is the workspace load's to report (with its file and key), not this scan's.
    (workspace / "datasets" / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    assert s3a_needs(settings(workspace)) == ["dataset web_events (lands in s3://landing-bucket/web/{date})"]
    # No workspace there (a unit test's settings, a typo): nothing lands on S3 as far as sessions can tell.
    assert s3a_needs(settings(tmp_path / "no-such-workspace")) == []


def test_s3a_settings_name_the_store_and_never_its_credentials() -> None:
    env = {"CDP_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1",
           "AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": SECRET}
    assert s3a_conf(LAKE_ON_S3, env) == {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    }
    # AWS itself: no endpoint, the default region.
    assert s3a_conf(LAKE_ON_S3, {}) == {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
    }


def test_an_s3a_lake_without_the_connector_jars_says_to_run_setup(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_conf, "S3A_JARS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError) as missing:
        s3a_jars(["the lake s3a://b/lake"])
    assert str(missing.value) == (f"the lake s3a://b/lake is on S3 but {tmp_path} has no hadoop-aws jar: run "
                                  "`make setup` to resolve it (with the AWS SDK bundle)")
    with pytest.raises(FileNotFoundError) as missing:
        s3a_jars(["dataset web_events (lands in s3://b/web/{date})"])
    assert str(missing.value).startswith("dataset web_events (lands in s3://b/web/{date}) is on S3 but ")


def test_checkpoints_live_under_an_object_store_lake(tmp_path: Path) -> None:
    state = ServerState(tmp_path, 15099)
    assert checkpoint_dir(state, {"CDP_LAKE": "/data/lake"}) == str(tmp_path / "checkpoints")
    assert checkpoint_dir(state, {"CDP_LAKE": "s3a://b/lake/"}) == "s3a://b/lake/_checkpoints/spark-connect"
    assert checkpoint_dir(state, {"CDP_LAKE": "s3a://b/lake", "CDP_SPARK_CHECKPOINT_DIR": "hdfs://nn/ckpt"}) == (
        "hdfs://nn/ckpt")


def test_the_connect_server_command_for_an_s3a_lake_holds_no_secret(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_LAKE", "s3a://lake-bucket/lake")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    command = server_command(ServerState(tmp_path, 15099), "spark://127.0.0.1:7077", "1g",
                             {"CDP_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY": SECRET})
    assert not any(SECRET in part for part in command)
    assert "spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000" in command
    assert "spark.checkpoint.dir=s3a://lake-bucket/lake/_checkpoints/spark-connect" in command
    jars = command[command.index("--jars") + 1].split(",")
    assert [Path(j).name for j in jars if "/s3a/" in j] == ["bundle-2.29.52.jar", "hadoop-aws-3.4.2.jar"]


def test_the_connect_server_of_a_workspace_landing_on_s3_loads_the_connector(
        tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDP_LAKE", "CDP_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "CDP_S3_PATH_STYLE", "CDP_SPARK_CHECKPOINT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    state = ServerState(tmp_path, 15099)

    def s3a_parts(command: list[str]) -> list[str]:
        jars = [Path(j).name for j in command[command.index("--jars") + 1].split(",") if "/s3a/" in j]
        return jars + [c for c in command if c.startswith("spark.hadoop.fs.s3a.")]

    # A local lake and a local landing: the server starts as it always did, without the 640 MB SDK.
    monkeypatch.setenv("CDP_WORKSPACE", str(repo_root / "examples" / "retail"))
    assert s3a_parts(server_command(state, "local[2]", "1g")) == []
    monkeypatch.setenv("CDP_WORKSPACE", str(workspace_landing_on_s3(repo_root, tmp_path / "ws")))
    command = server_command(state, "local[2]", "1g")
    assert s3a_parts(command) == [
        "bundle-2.29.52.jar", "hadoop-aws-3.4.2.jar", "spark.hadoop.fs.s3a.impl=org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region=us-east-1", "spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access=true", "spark.hadoop.fs.s3a.connection.ssl.enabled=false"]
    assert not any(SECRET in part for part in command)
    # A local lake keeps its checkpoints in the server's state folder: only the landing is on S3.
    assert f"spark.checkpoint.dir={tmp_path / 'checkpoints'}" in command


def test_the_lake_store_env_comes_from_its_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lake_store_env({}) == {}
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_S3", json.dumps({
        "conn_type": "aws", "login": "key-id", "password": SECRET,
        "extra": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}}))
    assert lake_store_env({"CDP_LAKE_CONNECTION": "lake_s3"}) == {
        "AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "eu-west-1",
        "CDP_S3_ENDPOINT": "http://127.0.0.1:9000"}


def test_delta_rs_options_of_an_s3_table() -> None:
    env = {"CDP_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY": SECRET}
    assert object_store_options("s3a://b/lake/datasets/crm", env) == {
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}
    assert object_store_options("/data/lake/datasets/crm", env) == {}
