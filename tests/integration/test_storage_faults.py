"""Faults between the transports and their real servers: a fault-injecting proxy on loopback fails the first
attempts, and an upload process is SIGKILLed mid-way (64 MB, multipart / blocks / resumable pieces)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.fault_proxy import FaultProxy
from servers.processes import REPO_ROOT, FakeGcsServer, SshdServer, free_port
from servers.targets import MB, Target

NETWORK_KINDS = ("s3", "azure_blob", "gcs", "sftp")
SERVER_FIXTURE = {"s3": "moto_server", "azure_blob": "azurite_server", "gcs": "gcs_server", "sftp": "sshd_server"}
PART = 8 * MB  # multipart part / block / resumable piece size in these tests


@pytest.fixture(params=NETWORK_KINDS)
def target(request: pytest.FixtureRequest) -> Target:
    server = request.getfixturevalue(SERVER_FIXTURE[request.param])
    tgt = Target(request.param, server)
    tgt.prepare()
    return tgt


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """64 MB of seeded random bytes and their SHA-256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    rng = random.Random(10)
    with open(path, "wb") as handle:
        for _ in range(64):
            piece = rng.randbytes(MB)
            digest.update(piece)
            handle.write(piece)
    return str(path), digest.hexdigest()


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(MB):
            digest.update(piece)
    return digest.hexdigest()


@pytest.mark.parametrize("fault", ["reset", "http_503"])
def test_server_failing_first_two_attempts_receives_the_file_once(
        target: Target, fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    if fault == "http_503" and target.kind == "sftp":
        pytest.skip("SFTP is not HTTP")
    assert target.server is not None
    data = b"id,status\n1,realized\n2,exited\n"
    (tmp_path / "f.csv").write_bytes(data)
    faults = {"reset_first": 2} if fault == "reset" else {"http_error_first": 2}
    with FaultProxy(target.server.port, **faults) as proxy:  # type: ignore[arg-type]
        for name, value in target.env(port=proxy.port).items():
            monkeypatch.setenv(name, value)
        with caplog.at_level(logging.WARNING, logger="cdp.storage"), target.transport() as transport:
            stored = transport.put(str(tmp_path / "f.csv"), "audience_a.csv",
                                   sha256=hashlib.sha256(data).hexdigest())
            assert proxy.faults == 2
            assert stored.size == len(data)
            assert [f.name for f in transport.list()] == ["audience_a.csv"]
            transport.get("audience_a.csv", str(tmp_path / "back.csv"))
    assert (tmp_path / "back.csv").read_bytes() == data
    retries = [r.getMessage() for r in caplog.records if r.name == "cdp.storage.base" and "retrying" in r.getMessage()]
    reason = {"reset": "connection lost", "http_503": "HTTP 503"}[fault]
    if target.kind == "s3" and fault == "http_503":
        reason = "HTTP 503 503"  # moto's 503 from the proxy has no error body: botocore's code is the status
    # google-cloud-storage also fetches the bucket's metadata in a background thread, which may take one of the
    # injected faults: then the upload itself needed only one retry.
    expected_retries = (1, 2) if target.kind == "gcs" else (2,)
    assert len(retries) in expected_retries
    assert retries == [f"upload to {stored.location} failed (attempt {n} of 3): {reason}; retrying"
                       for n in range(1, len(retries) + 1)]


UPLOADER = """
import json, sys
from cdp.storage import RetryPolicy, open_transport
params = json.loads(sys.argv[1])
transport = open_transport(params.pop("kind"), params.pop("connection_id"), retry=RetryPolicy(attempts=1), **params)
transport.put(sys.argv[2], "audience_big.bin", sha256=sys.argv[3])
"""


def start_uploader(params: dict[str, object], local: str, sha: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", UPLOADER, json.dumps(params), local, sha],
                            env={**os.environ, **env}, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def wait_for(condition: threading.Event, process: subprocess.Popen[bytes], what: str) -> None:
    """Until ``condition`` is set (a readiness wait for the kill, not a timed assertion)."""
    deadline = time.monotonic() + 240
    while not condition.wait(0.1):
        if process.poll() is not None:
            raise AssertionError(f"the uploader ended before {what}: {process.stderr.read().decode()[-2000:]}"
                                 if process.stderr else f"the uploader ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def kill_target(request: pytest.FixtureRequest) -> Iterator[tuple[Target, FaultProxy]]:
    """A target with a stalling proxy in front; GCS gets its own server whose upload URLs name the proxy."""
    kind = request.param
    proxy_port = free_port()
    if kind == "gcs":
        server: FakeGcsServer | None = FakeGcsServer(external_port=proxy_port).start()  # type: ignore[assignment]
        tgt = Target(kind, server)
    else:
        server = None
        tgt = Target(kind, request.getfixturevalue(SERVER_FIXTURE[kind]))
    tgt.prepare()
    assert tgt.server is not None
    proxy = FaultProxy(tgt.server.port, port=proxy_port, stall_after_bytes=20 * MB).start()
    try:
        yield tgt, proxy
    finally:
        proxy.stop()
        if server is not None:
            server.stop()


# What a killed attempt leaves: an incomplete multipart upload (S3), a blob of uncommitted blocks (Azure),
# a temporary file (SFTP), nothing visible (GCS: an unfinished resumable session is no object).
LEFTOVERS = {"s3": 1, "azure_blob": 1, "gcs": 0, "sftp": 1}


@pytest.mark.parametrize("kill_target", NETWORK_KINDS, indirect=True)
def test_kill_mid_upload_leaves_nothing_under_the_name(kill_target: tuple[Target, FaultProxy],
                                                       big_file: tuple[str, str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tgt, proxy = kill_target
    local, sha = big_file
    params = tgt.params(part_size=PART)
    uploader = start_uploader(params, local, sha, tgt.env(port=proxy.port))
    wait_for(proxy.stalled, uploader, "20 MB went through the proxy")
    time.sleep(0.5)  # let the server finish storing the parts that did arrive
    os.kill(uploader.pid, signal.SIGKILL)
    uploader.wait()
    assert uploader.returncode == -signal.SIGKILL

    for name, value in tgt.env().items():  # from here on, straight to the server
        monkeypatch.setenv(name, value)
    with tgt.transport(part_size=PART) as transport:
        assert transport.stat("audience_big.bin") is None
        assert transport.list() == []
        if tgt.kind == "sftp":
            assert isinstance(tgt.server, SshdServer)
            leftovers = [p.name for p in (tgt.server.root / tgt.folder).iterdir()]
            assert len(leftovers) == 1 and leftovers[0].startswith(".audience_big.bin.")
        assert transport.cleanup_temporary() == LEFTOVERS[tgt.kind]
        assert transport.cleanup_temporary() == 0
        if tgt.kind == "sftp":
            assert isinstance(tgt.server, SshdServer)
            assert list((tgt.server.root / tgt.folder).iterdir()) == []

        stored = transport.put(local, "audience_big.bin", sha256=sha)
        assert stored.size == 64 * MB
        assert [f.name for f in transport.list()] == ["audience_big.bin"]
        transport.get("audience_big.bin", str(tmp_path / "back.bin"))
    assert sha256_of(str(tmp_path / "back.bin")) == sha


def test_local_kill_mid_copy(tmp_path: Path) -> None:
    """The local folder: the source is a FIFO fed 20 MB, so the copy is surely mid-way when it is killed."""
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    tgt = Target("local", None, local_root=str(tmp_path / "exports"))
    uploader = start_uploader(tgt.params(), str(fifo), "0" * 64, {})
    with open(fifo, "wb") as feed:
        feed.write(os.urandom(20 * MB))
        feed.flush()
        folder = tmp_path / "exports" / tgt.folder
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size >= 16 * MB for p in folder.glob(".*.tmp")) if folder.exists() else True:
            assert uploader.poll() is None and time.monotonic() < deadline, "the copy did not start"
            time.sleep(0.05)
        os.kill(uploader.pid, signal.SIGKILL)
        uploader.wait()
    transport = tgt.transport()
    assert transport.stat("audience_big.bin") is None
    assert transport.list() == []
    assert len(list(folder.glob(".audience_big.bin.*.tmp"))) == 1
    assert transport.cleanup_temporary() == 1
    assert list(folder.iterdir()) == []
    (tmp_path / "small.bin").write_bytes(b"complete")
    transport.put(str(tmp_path / "small.bin"), "audience_big.bin", sha256="0" * 64)
    assert (folder / "audience_big.bin").read_bytes() == b"complete"


def test_disconnect_mid_upload_is_retried_and_leaves_one_file(target: Target, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops after 3 MB of a 12 MB upload: the retry delivers the file once, nothing is left over."""
    assert target.server is not None
    data = random.Random(3).randbytes(12 * MB)
    (tmp_path / "f.bin").write_bytes(data)
    with FaultProxy(target.server.port, drop_after_bytes=3 * MB) as proxy:
        for name, value in target.env(port=proxy.port).items():
            monkeypatch.setenv(name, value)
        with target.transport(part_size=PART) as transport:
            stored = transport.put(str(tmp_path / "f.bin"), "audience_big.bin",
                                   sha256=hashlib.sha256(data).hexdigest())
            assert proxy.faults == 1
            assert stored.size == len(data)
            assert [f.name for f in transport.list()] == ["audience_big.bin"]
            assert transport.cleanup_temporary() == 0  # the failed attempt left nothing behind
            transport.get("audience_big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    if target.kind == "sftp":
        assert isinstance(target.server, SshdServer)
        assert [p.name for p in (target.server.root / target.folder).iterdir()] == ["audience_big.bin"]
