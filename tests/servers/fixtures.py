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
