"""Shared fixtures. Tests are tiered by folder (unit, dags, integration, e2e) and marked accordingly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from servers.processes import S3_KEY_ID, S3_SECRET

from cdp.spark import get_session

TIERS = ("unit", "dags", "integration", "e2e")

# Real servers on loopback (S3, Azure Blob, GCS, SFTP), session-scoped, started only when a test asks.
pytest_plugins = ("servers.fixtures",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def spark(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One local SparkSession for the whole test run (JVM start-up is the expensive part).

    With the S3A connector only when a collected test is marked ``s3a`` (it reads objects landed on the session's
    moto server in place): its jars must be on the classpath when the JVM starts, and they cost little at the
    start (see README, Scale-out), but a run without such a test does not pay even that.
    """
    s3a: list[str] = []
    with pytest.MonkeyPatch.context() as env:
        if any(item.get_closest_marker("s3a") for item in request.session.items):
            moto = request.getfixturevalue("moto_server")
            # S3A reads where the store is from the session's settings (CDP_S3_ENDPOINT) and its credentials from
            # the JVM's environment, fixed when the JVM starts: moto's, for the JVM only (restored here after).
            for name, value in (("CDP_S3_ENDPOINT", moto.url), ("AWS_ACCESS_KEY_ID", S3_KEY_ID),
                                ("AWS_SECRET_ACCESS_KEY", S3_SECRET), ("AWS_REGION", "us-east-1")):
                env.setenv(name, value)
            s3a = ["the tests marked s3a (objects landed on the session's moto S3 server)"]
        session = get_session(
            "cdp-tests",
            master="local[2]",  # both cores of the CI machine
            extra={
                # Tiny inputs: a few shuffle partitions keep each action fast.
                "spark.sql.shuffle.partitions": "2",
                "spark.default.parallelism": "2",
                # Derby and the warehouse go to a temp folder, not the repository.
                "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
                "spark.driver.extraJavaOptions": f"-Dderby.system.home={tmp_path_factory.mktemp('derby')}",
            },
            s3a=s3a,
        )
    session.sparkContext.setLogLevel("WARN")
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


@pytest.fixture()
def lake(tmp_path: Path) -> str:
    """An empty lake folder for one test."""
    path = tmp_path / "lake"
    path.mkdir()
    return str(path)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
