"""Shared fixtures. Tests are tiered by folder (unit, dags, integration, e2e) and marked accordingly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

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
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One local SparkSession for the whole test run (JVM start-up is the expensive part)."""
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
