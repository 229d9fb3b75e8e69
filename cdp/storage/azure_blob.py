"""Azure Blob Storage and ADLS Gen2 (through its blob endpoint), with the Azure provider's ``WasbHook``.

Block blobs: the SDK uploads blocks and commits the block list last; the blob (or its new version,
when one already exists) becomes visible only at that commit. A killed upload leaves uncommitted
blocks; :meth:`AzureBlobTransport.cleanup_temporary` deletes blobs that have only uncommitted blocks.
"""

from __future__ import annotations

from typing import Any

from cdp.errors import DestinationError
from cdp.storage.base import Failure, RemoteFile, RetryPolicy, Transport, exception_chain, join_prefix, network_failure
from cdp.storage.connections import get_connection

MB = 1024 * 1024


class AzureBlobTransport(Transport):
    """Blobs under ``container/prefix/`` of a storage account.

    Connection (type ``wasb``), as the provider reads it: extra ``connection_string``; or host = account
    URL (``https://<account>.blob.core.windows.net``) with login = account name and password = account
    key, or extra ``shared_access_key`` / ``sas_token``, or a service principal (extra ``tenant_id``,
    login = client id, password = secret), or managed identity.

    :param block_size: files above this size are uploaded as blocks of this size, then committed.
    """

    kind = "azure_blob"

    def __init__(self, connection_id: str | None, container: str, prefix: str = "", *,
                 block_size: int = 8 * MB, retry: RetryPolicy | None = None) -> None:
        if not container:
            raise DestinationError("an azure_blob destination needs a container")
        self.container = container
        self.prefix = join_prefix(prefix)
        self.block_size = block_size
        self._client: Any = None
        self._account = "account"
        super().__init__(f"azure://{container}/{self.prefix}", connection_id, retry or RetryPolicy())
        self.conn_id: str = connection_id or "wasb_default"
        self.connection_id = self.conn_id
        # Building the client does not connect; it tells the account name for the locations.
        self.container_client  # noqa: B018

    def _blob_name(self, name: str) -> str:
        return join_prefix(self.prefix, name)

    @property
    def container_client(self) -> Any:
        """The SDK's ContainerClient from the connection (built once)."""
        if self._client is None:
            from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

            conn = get_connection(self.conn_id)
            extra = conn.extra_dejson
            self._add_secret(conn.password, *(extra.get(k) for k in ("connection_string", "shared_access_key",
                                                                      "sas_token", "account_key")))
            conn_string = extra.get("connection_string") or ""
            for part in conn_string.split(";"):
                if part.startswith("AccountKey="):
                    self._add_secret(part[len("AccountKey="):])
            service = WasbHook(wasb_conn_id=self.conn_id).get_conn()
            self._account = service.account_name or "account"
            self.folder_location = f"azure://{self._account}/{join_prefix(self.container, self.prefix)}"
            self._client = service.get_container_client(self.container)
            # The SDK chunks by its configuration (one PUT up to max_single_put_size, else blocks of
            # max_block_size and a commit); the hook builds the client, so the sizes are set here.
            self._client._config.max_single_put_size = self.block_size
            self._client._config.max_block_size = self.block_size
        return self._client

    def location(self, name: str) -> str:
        """``azure://<account>/<container>/<prefix>/<name>`` (the account is known once connected)."""
        return f"{self.folder_location}/{name}"

    def _options(self) -> dict[str, Any]:
        # Our tenacity policy owns the retries; the SDK's own retry policy reads these per call.
        return {"retry_total": 0, "connection_timeout": self.retry.timeout, "read_timeout": self.retry.timeout}

    def _put(self, local_path: str, name: str, sha256: str) -> None:
        from azure.storage.blob import BlobType

        client = self.container_client.get_blob_client(self._blob_name(name))
        with open(local_path, "rb") as handle:
            client.upload_blob(handle, blob_type=BlobType.BLOCKBLOB, overwrite=True, metadata={"sha256": sha256},
                               max_concurrency=2, **self._options())

    def _stat(self, name: str) -> RemoteFile | None:
        from azure.core.exceptions import ResourceNotFoundError

        client = self.container_client.get_blob_client(self._blob_name(name))
        try:
            props = client.get_blob_properties(**self._options())
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "ContainerNotFound":
                raise
            return None
        return RemoteFile(name=name, size=int(props.size), sha256=(props.metadata or {}).get("sha256"),
                          location=self.location(name))

    def _list(self) -> list[RemoteFile]:
        folder = f"{self.prefix}/" if self.prefix else ""
        files = []
        for item in self.container_client.walk_blobs(name_starts_with=folder, include=["metadata"],
                                                     delimiter="/", **self._options()):
            name = item.name[len(folder):]
            if not name or name.endswith("/") or not hasattr(item, "size"):
                continue  # a virtual sub-folder
            files.append(RemoteFile(name=name, size=int(item.size), sha256=(item.metadata or {}).get("sha256"),
                                    location=self.location(name)))
        return files

    def _get(self, name: str, local_path: str) -> None:
        client = self.container_client.get_blob_client(self._blob_name(name))
        with open(local_path, "wb") as handle:
            client.download_blob(**self._options()).readinto(handle)

    def _delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container_client.delete_blob(self._blob_name(name), **self._options())
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "ContainerNotFound":
                raise

    def _cleanup_temporary(self) -> int:
        folder = f"{self.prefix}/" if self.prefix else ""
        committed = {b.name for b in self.container_client.list_blobs(name_starts_with=folder, **self._options())}
        removed = 0
        for blob in self.container_client.list_blobs(name_starts_with=folder, include=["uncommittedblobs"],
                                                     **self._options()):
            if blob.name in committed or "/" in blob.name[len(folder):]:
                continue  # a committed blob's stray blocks are dropped by its next commit; sub-folders are not ours
            self.container_client.delete_blob(blob.name, **self._options())
            removed += 1
        return removed

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _classify(self, exc: Exception) -> Failure:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        conn = self._connection_hint()
        for err in exception_chain(exc):
            if isinstance(err, ServiceRequestError):
                return Failure(True, network_failure(err) or "could not connect", self.transient_hint())
            if isinstance(err, ServiceResponseError):
                return Failure(True, network_failure(err) or "connection lost", self.transient_hint())
            if isinstance(err, ClientAuthenticationError):
                return Failure(False, f"authentication failed ({_error_code(err) or err.status_code})",
                               f"Check the account key, SAS token or service principal of {conn}")
            if isinstance(err, ResourceNotFoundError) and _error_code(err) == "ContainerNotFound":
                return Failure(False, f"container '{self.container}' does not exist",
                               "Create the container or fix `container` in the destination")
            if isinstance(err, HttpResponseError):
                status = err.status_code
                if status == 429 or (status is not None and status >= 500):
                    return Failure(True, f"HTTP {status} {_error_code(err)}".strip(), self.transient_hint())
                if status == 403:
                    return Failure(False, f"access denied ({_error_code(err)})",
                                   f"Check that {conn} may write to container '{self.container}'")
                return Failure(False, f"HTTP {status} {_error_code(err)}".strip(), f"Check the destination and {conn}")
        reason = network_failure(exc)
        if reason:
            return Failure(True, reason, self.transient_hint())
        return Failure(False, f"{type(exc).__name__}: {exc}", f"Check the destination and {conn}")


def _error_code(exc: Any) -> str:
    return str(getattr(exc, "error_code", None) or "")
