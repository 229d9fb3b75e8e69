"""Every file transport against its real server on loopback: moto (S3), Azurite (Azure Blob), fake-gcs-server
(GCS), OpenSSH's sshd (SFTP) and a local folder. The same behaviour is asserted for each."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from servers.processes import AZURITE_KEY, S3_SECRET, SshdServer, free_port
from servers.targets import BUCKET, Target

from cdp.errors import DestinationError
from cdp.storage import RemoteFile

KINDS = ("local", "s3", "azure_blob", "gcs", "sftp")
SERVER_FIXTURE = {"s3": "moto_server", "azure_blob": "azurite_server", "gcs": "gcs_server", "sftp": "sshd_server"}
# Where each target keeps the checksum: object metadata, or nowhere (local folder, SFTP).
HOLDS_SHA256 = {"local": False, "s3": True, "azure_blob": True, "gcs": True, "sftp": False}


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Target:
    kind = request.param
    server = request.getfixturevalue(SERVER_FIXTURE[kind]) if kind in SERVER_FIXTURE else None
    tgt = Target(kind, server, local_root=str(tmp_path / "exports"))
    tgt.prepare()
    for name, value in tgt.env().items():
        monkeypatch.setenv(name, value)
    return tgt


def write(path: Path, data: bytes) -> tuple[str, str]:
    path.write_bytes(data)
    return str(path), hashlib.sha256(data).hexdigest()


def location(tgt: Target, name: str) -> str:
    if tgt.kind == "local":
        return (Path(tgt.local_root) / tgt.folder / name).as_uri()
    if tgt.kind == "s3":
        return f"s3://{BUCKET}/{tgt.folder}/{name}"
    if tgt.kind == "gcs":
        return f"gs://{BUCKET}/{tgt.folder}/{name}"
    if tgt.kind == "azure_blob":
        return f"azure://devstoreaccount1/{BUCKET}/{tgt.folder}/{name}"
    assert isinstance(tgt.server, SshdServer)
    return f"sftp://127.0.0.1:{tgt.server.port}{tgt.server.root / tgt.folder / name}"


def test_put_get_stat_overwrite_list(target: Target, tmp_path: Path) -> None:
    data = b"email_lc_sha256,status\r\n\"a,b\",realized\r\n\x00\xff binary tail\n"
    local, sha = write(tmp_path / "one.csv", data)
    with target.transport() as transport:
        stored = transport.put(local, "audience_a.csv", sha256=sha)
        expected = RemoteFile("audience_a.csv", len(data), sha if HOLDS_SHA256[target.kind] else None,
                              location(target, "audience_a.csv"))
        assert stored == expected
        assert transport.stat("audience_a.csv") == expected
        assert transport.stat("missing.csv") is None

        transport.get("audience_a.csv", str(tmp_path / "back.csv"))
        assert (tmp_path / "back.csv").read_bytes() == data

        # Re-sent under the same name: one file, the new bytes.
        new = b"email_lc_sha256,status\r\nx,exited\r\n"
        local2, sha2 = write(tmp_path / "two.csv", new)
        transport.put(local2, "audience_a.csv", sha256=sha2)
        transport.get("audience_a.csv", str(tmp_path / "back2.csv"))
        assert (tmp_path / "back2.csv").read_bytes() == new
        assert [(f.name, f.size) for f in transport.list()] == [("audience_a.csv", len(new))]
        stat = transport.stat("audience_a.csv")
        assert stat is not None and stat.sha256 == (sha2 if HOLDS_SHA256[target.kind] else None)

        transport.put(local, "audience_b.csv", sha256=sha)
        assert [f.name for f in transport.list()] == ["audience_a.csv", "audience_b.csv"]
        transport.delete("audience_a.csv")
        transport.delete("audience_a.csv")  # already gone: no error
        assert [f.name for f in transport.list()] == ["audience_b.csv"]


def test_list_excludes_temporary_files_and_cleanup_removes_ours(target: Target, tmp_path: Path) -> None:
    local, sha = write(tmp_path / "f.csv", b"a\n1\n")
    leftover = ".audience_a.csv.0123456789abcdef0123456789abcdef.tmp"
    with target.transport() as transport:
        transport.put(local, "audience_a.csv", sha256=sha)
        if target.kind == "local":
            (Path(target.local_root) / target.folder / leftover).write_bytes(b"partial")
        elif target.kind == "sftp":
            assert isinstance(target.server, SshdServer)
            (target.server.root / target.folder / leftover).write_bytes(b"partial")
        else:
            pytest.skip("object stores have no temporary names (see test_storage_faults for their leftovers)")
        assert [f.name for f in transport.list()] == ["audience_a.csv"]
        assert transport.cleanup_temporary() == 1
        assert transport.cleanup_temporary() == 0
        assert [f.name for f in transport.list()] == ["audience_a.csv"]


@pytest.mark.parametrize("name, problem", [
    ("../escape.csv", "it contains a path separator"),
    (".hidden.csv", "it starts with a dot"),
    ("tab\there.csv", "it contains a control character"),
    ("x" * 252 + ".csv", "it is longer than 255 bytes"),
])
def test_unsafe_names_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    tgt = Target("local", None, local_root=str(tmp_path))
    local, sha = write(tmp_path / "f.csv", b"x")
    with pytest.raises(DestinationError) as err:
        tgt.transport().put(local, name, sha256=sha)
    assert str(err.value) == f"file name {name!r} cannot be delivered: {problem} (fix the file name template)"


def test_server_down_raises_after_retry_budget(target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    if target.kind == "local":
        pytest.skip("a local folder has no server")
    dead = free_port()  # nothing listens there: connection refused on every attempt
    for name, value in target.env(port=dead).items():
        monkeypatch.setenv(name, value)
    local, sha = write(tmp_path / "f.csv", b"a\n1\n")
    with caplog.at_level(logging.WARNING, logger="cdp.storage"), pytest.raises(DestinationError) as err:
        target.transport().put(local, "audience_a.csv", sha256=sha)
    where = location(target, "audience_a.csv")
    if target.kind == "sftp":
        assert isinstance(target.server, SshdServer)
        where = where.replace(f":{target.server.port}/", f":{dead}/")
    assert str(err.value) == (
        f"could not upload to {where} after 3 attempts: connection refused. Check that the server is up and "
        f"that connection '{target.connection_id}' points at it, then re-run the task (files already delivered "
        "are not sent again)")
    assert [r.getMessage() for r in caplog.records if r.name == "cdp.storage.base"] == [
        f"upload to {where} failed (attempt {n} of 3): connection refused; retrying" for n in (1, 2)]


def test_credentials_never_logged(target: Target, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    if target.kind == "local":
        pytest.skip("a local folder has no credentials")
    if target.kind == "gcs":
        pytest.skip("the emulator takes anonymous credentials: there is no secret to leak")
    secrets = {"s3": [S3_SECRET], "azure_blob": [AZURITE_KEY], "sftp": []}[target.kind]
    if isinstance(target.server, SshdServer):
        key_text = (target.server.folder / "client_key").read_text()
        secrets = [line for line in key_text.splitlines() if line and not line.startswith("-----")]
    local, sha = write(tmp_path / "f.csv", b"a\n1\n")
    with caplog.at_level(logging.DEBUG), target.transport() as transport:
        transport.put(local, "audience_a.csv", sha256=sha)
        transport.list()
        transport.get("audience_a.csv", str(tmp_path / "back.csv"))
        with pytest.raises(DestinationError) as err:
            transport.get("missing.csv", str(tmp_path / "missing.csv"))
    out, errs = capfd.readouterr()
    text = caplog.text + out + errs + str(err.value)
    assert "delivered" in caplog.text
    for secret in secrets:
        assert secret not in text


def test_unknown_type_is_refused() -> None:
    from cdp.storage import open_transport

    with pytest.raises(DestinationError) as err:
        open_transport("ftp", "partner")
    assert str(err.value) == "unknown destination type 'ftp' (one of: local, s3, azure_blob, gcs, sftp)"
