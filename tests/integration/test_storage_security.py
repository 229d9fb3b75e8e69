"""SFTP host keys are verified (never auto-accepted), S3 server-side encryption reaches the server,
connections resolve from AIRFLOW_CONN_* in a plain process and are handed over without a command line."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers.processes import REPO_ROOT, AsyncsshSftpServer, MotoServer, SshdServer
from servers.targets import BUCKET, FAST_RETRY, Target

from cdp.errors import DestinationError
from cdp.storage import connection_env, open_transport
from cdp.storage.local import LocalTransport
from cdp.storage.sftp import fingerprint


def sftp_env(monkeypatch: pytest.MonkeyPatch, server: SshdServer, **extra: object) -> None:
    conn = server.connection()
    conn["extra"] = {k: v for k, v in {**conn["extra"], **extra}.items() if v is not None}
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", json.dumps(conn))


def test_sftp_wrong_host_key_is_refused(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    import paramiko

    sftp_env(monkeypatch, sshd_server, host_key=sshd_server.host_key(other=True))
    (tmp_path / "f.csv").write_bytes(b"x")
    offered = fingerprint(paramiko.Ed25519Key.from_private_key_file(str(sshd_server.folder / "host_key")))
    configured = fingerprint(paramiko.Ed25519Key.from_private_key_file(str(sshd_server.folder / "other_host_key")))
    transport = open_transport("sftp", "partner_sftp", path=str(sshd_server.root / "wrong-key"), retry=FAST_RETRY)
    with pytest.raises(DestinationError) as err:
        transport.put(str(tmp_path / "f.csv"), "audience_a.csv", sha256="0" * 64)
    where = f"sftp://127.0.0.1:{sshd_server.port}"
    assert str(err.value) == (
        f"could not upload to {where}{sshd_server.root}/wrong-key/audience_a.csv: the host key of {where} "
        f"(ssh-ed25519 {offered}) does not match extra.host_key of connection 'partner_sftp' ({configured}). "
        "Refusing to connect: if the server's owner confirms a new key, update extra.host_key; otherwise someone "
        "may be intercepting the connection")
    assert not (sshd_server.root / "wrong-key").exists()


def test_sftp_without_host_key_is_refused(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    sftp_env(monkeypatch, sshd_server, host_key=None)
    with pytest.raises(DestinationError) as err:
        open_transport("sftp", "partner_sftp", path=str(sshd_server.root))
    assert str(err.value) == (
        f"connection 'partner_sftp' has no host_key: the host key of sftp://127.0.0.1:{sshd_server.port} is never "
        "accepted unverified; set extra.host_key to the server's public host key (the 'ssh-ed25519 AAAA...' line "
        "of its known_hosts entry, confirmed with the server's owner)")


def test_sftp_no_host_key_check_is_refused(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    sftp_env(monkeypatch, sshd_server, host_key=None, no_host_key_check="true")
    with pytest.raises(DestinationError) as err:
        open_transport("sftp", "partner_sftp", path=str(sshd_server.root))
    assert str(err.value) == (
        f"connection 'partner_sftp' sets no_host_key_check: the host key of sftp://127.0.0.1:{sshd_server.port} "
        "must be verified; remove it and set extra.host_key to the server's public host key")


def test_missing_connection_says_how_to_define_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    with pytest.raises(DestinationError) as err:
        open_transport("sftp", "nowhere", path="/out")
    assert str(err.value) == (
        "Airflow connection 'nowhere' is not defined: create it (Admin > Connections, a secrets backend, or the "
        "environment variable AIRFLOW_CONN_NOWHERE on the worker)")


@pytest.mark.parametrize("sse, kms_key_id", [("AES256", None), ("aws:kms", "alias/cdp-exports")])
def test_s3_server_side_encryption_reaches_the_server(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path, sse: str, kms_key_id: str | None) -> None:
    tgt = Target("s3", moto_server)
    tgt.prepare()
    for name, value in tgt.env().items():
        monkeypatch.setenv(name, value)
    data = b"id\n1\n"
    (tmp_path / "f.csv").write_bytes(data)
    # A small part size so that the multipart path carries the headers too.
    for name, size in (("small.csv", data), ("large.bin", os.urandom(6 * 1024 * 1024))):
        path = tmp_path / name
        path.write_bytes(size)
        with tgt.transport(sse=sse, kms_key_id=kms_key_id, part_size=5 * 1024 * 1024) as transport:
            transport.put(str(path), name, sha256=hashlib.sha256(size).hexdigest())
        head = moto_server.client().head_object(Bucket=BUCKET, Key=f"{tgt.folder}/{name}")
        assert head["ServerSideEncryption"] == sse
        assert head.get("SSEKMSKeyId") == kms_key_id
        assert head["Metadata"] == {"sha256": hashlib.sha256(size).hexdigest()}


def test_s3_kms_key_without_kms_is_refused() -> None:
    with pytest.raises(DestinationError) as err:
        open_transport("s3", "aws_default", bucket="b", sse="AES256", kms_key_id="alias/k")
    assert str(err.value) == "s3://b: kms_key_id is set but sse is 'AES256': set sse to 'aws:kms'"


def test_s3_missing_bucket_is_not_retried(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    tgt = Target("s3", moto_server)
    for name, value in tgt.env().items():
        monkeypatch.setenv(name, value)
    (tmp_path / "f.csv").write_bytes(b"x")
    transport = open_transport("s3", tgt.connection_id, bucket="no-such-bucket", path="out", retry=FAST_RETRY)
    with pytest.raises(DestinationError) as err:
        transport.put(str(tmp_path / "f.csv"), "a.csv", sha256="0" * 64)
    assert str(err.value) == ("could not upload to s3://no-such-bucket/out/a.csv: bucket 'no-such-bucket' does not "
                              "exist. Create the bucket or fix `bucket` in the destination")


def test_connection_env_hands_connections_to_a_plain_process(moto_server: MotoServer, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The job side: a plain Python process (no Airflow DB, no task context) resolves the connection that
    connection_env() exported, from its environment only, and delivers with it."""
    tgt = Target("s3", moto_server)
    tgt.prepare()
    # In the task the connection could come from anywhere Airflow looks; here from the environment as well.
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_S3", tgt.env()[f"AIRFLOW_CONN_{tgt.connection_id.upper()}"])
    env = connection_env(["partner_s3"])
    assert list(env) == ["AIRFLOW_CONN_PARTNER_S3"]
    assert json.loads(env["AIRFLOW_CONN_PARTNER_S3"])["extra"]["endpoint_url"] == moto_server.url
    (tmp_path / "f.csv").write_bytes(b"id\n7\n")
    script = ("import sys; from cdp.storage import open_transport; "
              f"t = open_transport('s3', 'partner_s3', bucket={BUCKET!r}, path={tgt.folder!r}); "
              "print(t.put(sys.argv[1], 'handed.csv', sha256='ab' * 32).location)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AWS_"))}
    clean["AIRFLOW_HOME"] = str(tmp_path / "no-airflow-home")  # no metadata DB, no config: a bare process
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "f.csv")], env={**clean, **env},
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == f"s3://{BUCKET}/{tgt.folder}/handed.csv"
    body = moto_server.client().get_object(Bucket=BUCKET, Key=f"{tgt.folder}/handed.csv")["Body"].read()
    assert body == b"id\n7\n"


def test_local_retention_removes_only_old_listed_files(tmp_path: Path) -> None:
    transport = LocalTransport(str(tmp_path / "zone"))
    for name in ("old_a.csv", "old_b.csv", "new.csv", "someone_elses.csv"):
        (tmp_path / name).write_bytes(name.encode())
        transport.put(str(tmp_path / name), name, sha256="0" * 64)
    now = time.time()
    ten_days_ago = now - 10 * 86400
    for name in ("old_a.csv", "old_b.csv", "someone_elses.csv"):
        os.utime(tmp_path / "zone" / name, (ten_days_ago, ten_days_ago))
    removed = transport.remove_older_than(7, ["old_a.csv", "old_b.csv", "new.csv"], now=now)
    assert removed == ["old_a.csv", "old_b.csv"]
    assert [f.name for f in transport.list()] == ["new.csv", "someone_elses.csv"]


def test_sftp_password_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             caplog: pytest.LogCaptureFixture) -> None:
    """Password authentication (asyncssh's server), host key still verified; the password never reaches a log."""
    with AsyncsshSftpServer() as server:
        assert isinstance(server, AsyncsshSftpServer)
        monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", server.connection_json())
        (tmp_path / "f.csv").write_bytes(b"id\n1\n")
        with caplog.at_level(logging.DEBUG), \
                open_transport("sftp", "partner_sftp", path="/drop", retry=FAST_RETRY) as transport:
            stored = transport.put(str(tmp_path / "f.csv"), "audience_a.csv", sha256="0" * 64)
            assert [f.name for f in transport.list()] == ["audience_a.csv"]
        assert stored.location == f"sftp://127.0.0.1:{server.port}/drop/audience_a.csv"
        assert (server.root / "drop" / "audience_a.csv").read_bytes() == b"id\n1\n"
        assert server.password not in caplog.text

        wrong = {**server.connection(), "password": "not-the-password"}
        monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", json.dumps(wrong))
        with pytest.raises(DestinationError) as err:
            open_transport("sftp", "partner_sftp", path="/drop", retry=FAST_RETRY).list()
        assert str(err.value) == (
            f"could not list sftp://127.0.0.1:{server.port}/drop: authentication failed. Check the login and the "
            "password or private key of connection 'partner_sftp'")
