"""Settings of the scale-out: the S3A connector for an s3a:// lake, checkpoints off the driver's disk, the lake
store's connection, delta-rs options. No secret ever becomes a Spark setting or a command-line argument."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdp import spark_conf
from cdp.schema_evolution import object_store_options
from cdp.spark_conf import s3a_conf, s3a_jars
from cdp.spark_connect import ServerState, checkpoint_dir, server_command
from cdp.storage.connections import lake_store_env

SECRET = "unit-test-secret-9Qx"


def test_a_local_lake_gets_no_s3a_setting_nor_jar() -> None:
    assert s3a_conf("/data/lake", {"CDP_S3_ENDPOINT": "http://127.0.0.1:9000"}) == {}
    assert s3a_conf("file:///data/lake", {}) == {}
    assert s3a_jars("/data/lake") == []


def test_s3a_settings_name_the_store_and_never_its_credentials() -> None:
    env = {"CDP_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1",
           "AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": SECRET}
    assert s3a_conf("s3a://lake-bucket/lake", env) == {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    }
    # AWS itself: no endpoint, the default region.
    assert s3a_conf("s3a://lake-bucket/lake", {}) == {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
    }


def test_an_s3a_lake_without_the_connector_jars_says_to_run_setup(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_conf, "S3A_JARS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError) as missing:
        s3a_jars("s3a://b/lake")
    assert str(missing.value) == (f"the lake s3a://b/lake is on S3 but {tmp_path} has no hadoop-aws jar: run "
                                  "`make setup` to resolve it (with the AWS SDK bundle)")


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
