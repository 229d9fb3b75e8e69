"""One helper per destination type for the storage tests: make the bucket, point a connection at the server
(directly or through a fault proxy) and open the transport, so that one test body runs against every target.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

# Importing Airflow configures logging (dictConfig replaces the root handlers). Done here, at collection, so
# that it happens before pytest's log capture attaches its handler, not in the middle of a test.
import airflow  # noqa: F401

from cdp.storage import RetryPolicy, Transport, env_var_name, open_transport
from servers.processes import AzuriteServer, FakeGcsServer, MotoServer, Server, SshdServer

# Small budget so that the "stays down" tests take well under a second per target.
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.05, max_wait=0.2, timeout=15)
BUCKET = "cdp-exports"
MB = 1024 * 1024


@dataclass
class Target:
    """A destination type with its server (None for a local folder) and a folder of its own per test."""

    kind: str
    server: Server | None
    local_root: str = ""
    bucket: str = BUCKET
    folder: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}")

    @property
    def connection_id(self) -> str:
        return f"cdp_test_{self.kind}"

    def prepare(self) -> None:
        """Create the bucket / container once per server."""
        if isinstance(self.server, MotoServer):
            client = self.server.client()
            if self.bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
                client.create_bucket(Bucket=self.bucket)
        elif isinstance(self.server, AzuriteServer):
            service = self.server.service()
            if not service.get_container_client(self.bucket).exists():
                service.create_container(self.bucket)
        elif isinstance(self.server, FakeGcsServer):
            client = self.server.client()
            if client.lookup_bucket(self.bucket) is None:
                client.create_bucket(self.bucket)
        elif isinstance(self.server, SshdServer):
            self.server.root.mkdir(exist_ok=True)

    def connection(self, port: int | None = None) -> dict[str, Any]:
        """The Airflow connection (JSON form) reaching the server, directly or on ``port`` (a proxy)."""
        assert self.server is not None
        return self.server.connection_via(port or self.server.port)

    def env(self, port: int | None = None, connection: dict[str, Any] | None = None) -> dict[str, str]:
        """The ``AIRFLOW_CONN_*`` variable for this target (empty for a local folder)."""
        if self.server is None:
            return {}
        return {env_var_name(self.connection_id): json.dumps(connection or self.connection(port))}

    def params(self, **overrides: Any) -> dict[str, Any]:
        """The keyword arguments of :func:`open_transport` for this target's test folder."""
        params: dict[str, Any] = {"kind": self.kind, "connection_id": None if self.server is None else
                                  self.connection_id, "path": self.folder}
        if self.kind in ("s3", "gcs"):
            params["bucket"] = self.bucket
        if self.kind == "azure_blob":
            params["container"] = self.bucket
        if self.kind == "sftp":
            assert isinstance(self.server, SshdServer)
            params["path"] = str(self.server.root / self.folder)
        if self.kind == "local":
            params["root"] = self.local_root
        params.update(overrides)
        return params

    def transport(self, retry: RetryPolicy = FAST_RETRY, **overrides: Any) -> Transport:
        """Open the transport (the connection must be in the environment: see :meth:`env`)."""
        params = self.params(**overrides)
        return open_transport(params.pop("kind"), params.pop("connection_id"), retry=retry, **params)
