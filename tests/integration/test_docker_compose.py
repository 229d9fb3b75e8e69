"""docker-compose.yml: the full stack renders (`docker compose config`) with the services the README names.

`config` needs a Compose client, not an engine: the Compose plugin (`docker compose`) or the standalone
`docker-compose` (Debian's package). Where neither exists the test skips and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

SECRETS = {"CDP_S3_ACCESS_KEY": "cdp-minio", "CDP_S3_SECRET_KEY": "compose-test-secret",
           "CDP_POSTGRES_PASSWORD": "compose-test-pg", "CDP_AIRFLOW_JWT_SECRET": "compose-test-jwt"}
SERVICES = {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "spark-master", "spark-worker-1", "spark-worker-2", "minio", "minio-init", "kafka"}


def compose_command() -> list[str] | None:
    """The Compose client of this machine: the docker CLI's plugin, else the standalone docker-compose."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def render(repo_root: Path, env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose client here (neither the `docker compose` plugin nor `docker-compose`; Debian: "
                    "apt-get install docker-compose): docker-compose.yml not checked")
    # Only the variables given: a developer's own .env or shell must not decide the result.
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    empty = folder / "empty.env"  # docker-compose 1.x wants a file, not /dev/null
    empty.write_text("", encoding="utf-8")
    return subprocess.run([*command, "--project-directory", str(repo_root), "-f",
                           str(repo_root / "docker-compose.yml"), "--env-file", str(empty), "config"],
                          capture_output=True, text=True, check=False, env=clean, timeout=120)


def test_compose_file_renders_the_full_stack(repo_root: Path, tmp_path: Path) -> None:
    result = render(repo_root, SECRETS, tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == SERVICES
    scheduler = config["services"]["airflow-scheduler"]["environment"]
    assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:compose-test-pg@postgres:5432/airflow")
    assert scheduler["CDP_LAKE"] == "s3a://cdp-lake/lake"
    assert json.loads(scheduler["AIRFLOW_CONN_SPARK_DEFAULT"]) == {
        "conn_type": "spark", "host": "spark://spark-master", "port": 7077}
    # The executors on the workers get the lake's credentials from their environment.
    assert config["services"]["spark-worker-2"]["environment"]["AWS_SECRET_ACCESS_KEY"] == "compose-test-secret"
    assert config["services"]["spark-worker-1"]["command"] == [
        "spark-class", "org.apache.spark.deploy.worker.Worker", "spark://spark-master:7077"]
    # Published ports face this machine only.
    published = [p for s in config["services"].values() for p in s.get("ports", [])]
    assert published and all(str(p.get("host_ip", "")) == "127.0.0.1" if isinstance(p, dict)
                             else str(p).startswith("127.0.0.1:") for p in published)


def test_compose_file_refuses_to_render_without_its_secrets(repo_root: Path, tmp_path: Path) -> None:
    missing = {k: v for k, v in SECRETS.items() if k != "CDP_S3_SECRET_KEY"}
    result = render(repo_root, missing, tmp_path)
    assert result.returncode != 0
    assert "set CDP_S3_SECRET_KEY in .env (see .env.example)" in result.stderr
