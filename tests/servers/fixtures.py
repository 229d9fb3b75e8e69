"""pytest plugin: one server of each kind per test session, started only when a test asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers.processes import AzuriteServer, FakeGcsServer, MotoServer, SshdServer


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's S3 server on a free loopback port."""
    with MotoServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """Azurite's blob service, in memory, on a free loopback port."""
    with AzuriteServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGcsServer]:
    """fake-gcs-server, in memory, on a free loopback port."""
    with FakeGcsServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """OpenSSH's sshd (SFTP only, key authentication) on a free loopback port."""
    with SshdServer() as server:
        yield server  # type: ignore[misc]


# ---------------------------------------------------------------- streaming endpoints (http, kafka; kinesis: moto)
from servers.streaming import HttpReceiver, KafkaBroker  # noqa: E402 - this block is self-contained


@pytest.fixture(scope="session")
def http_receiver() -> Iterator[HttpReceiver]:
    """The fault-injecting HTTP API on a free loopback port (reset it at the start of each test)."""
    with HttpReceiver() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One Apache Kafka broker in KRaft mode on a free loopback port."""
    with KafkaBroker() as server:
        yield server  # type: ignore[misc]


# ---------------------------------------------------------------- the jobs' Spark Connect server (cdp/spark_connect.py)
from cdp.spark_connect import ServerState, free_port, start_server, stop_server  # noqa: E402 - a self-contained block


@pytest.fixture(scope="session")
def spark_connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerState]:
    """The jobs' Spark Connect server (cdp/spark_connect.py) on a free loopback port, stopped after the session.

    local[2] (both cores of the CI machine) and 2 GB: the jobs of the tests work on a few hundred rows.
    """
    state = ServerState(tmp_path_factory.mktemp("spark-connect"), free_port())
    start_server(state, master="local[2]", driver_memory="2g")
    try:
        yield state
    finally:
        stop_server(state)
