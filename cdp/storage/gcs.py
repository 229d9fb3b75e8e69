"""Google Cloud Storage with google-cloud-storage and google-auth.

Not the Google provider's ``GCSHook``: apache-airflow-providers-google 22.8.0 cannot be installed
beside our pins (its google-genai dependency requires tenacity<9.2.0, we pin tenacity 9.2.1, so pip
reports ResolutionImpossible), and it would bring in most of the Google Cloud SDK. The connection
is still an Airflow connection of type ``google_cloud_platform`` with the provider's extra keys.

An object appears only when its upload is finalised: small files go in one multipart request,
larger ones as a resumable upload of ``chunk_size`` pieces, finalised by the last piece. A killed
resumable upload leaves no object and nothing that can be listed (the session expires by itself
after a week), so :meth:`GcsTransport.cleanup_temporary` has nothing to remove and says so (0).
"""

from __future__ import annotations

import json
import os
from typing import Any

from cdp.errors import DestinationError
from cdp.storage.base import Failure, RemoteFile, RetryPolicy, Transport, exception_chain, join_prefix, network_failure
from cdp.storage.connections import get_connection

MB = 1024 * 1024


class GcsTransport(Transport):
    """Objects under ``gs://bucket/prefix/``.

    Connection (type ``google_cloud_platform``), extra: ``keyfile_dict`` (the service account JSON, as a
    string or an object) or ``key_path`` (a file on the worker), else the worker's default credentials;
    ``project``; for an emulator ``endpoint_url`` (anonymous credentials unless a key is given).

    :param chunk_size: files above this size go as a resumable upload in pieces of this size (a multiple of 256 KiB).
    """

    kind = "gcs"

    def __init__(self, connection_id: str | None, bucket: str, prefix: str = "", *,
                 chunk_size: int = 16 * MB, retry: RetryPolicy | None = None) -> None:
        if not bucket:
            raise DestinationError("a gcs destination needs a bucket")
        if chunk_size % (256 * 1024):
            raise DestinationError(f"gs://{bucket}: chunk_size must be a multiple of 256 KiB, got {chunk_size}")
        self.bucket_name = bucket
        self.prefix = join_prefix(prefix)
        self.chunk_size = chunk_size
        self._client: Any = None
        super().__init__(f"gs://{join_prefix(bucket, self.prefix)}", connection_id, retry or RetryPolicy())
        self.conn_id: str = connection_id or "google_cloud_default"
        self.connection_id = self.conn_id

    def _name(self, name: str) -> str:
        return join_prefix(self.prefix, name)

    @property
    def client(self) -> Any:
        """The google-cloud-storage Client from the connection (built once)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        from google.oauth2 import service_account

        extra = {k.removeprefix("extra__google_cloud_platform__"): v
                 for k, v in get_connection(self.conn_id).extra_dejson.items()}
        project = extra.get("project") or None
        endpoint = extra.get("endpoint_url") or None
        credentials: Any = None
        keyfile = extra.get("keyfile_dict")
        if keyfile:
            info = json.loads(keyfile) if isinstance(keyfile, str) else keyfile
            self._add_secret(info.get("private_key"), keyfile if isinstance(keyfile, str) else None)
            credentials = service_account.Credentials.from_service_account_info(info)
            project = project or info.get("project_id")
        elif extra.get("key_path"):
            credentials = service_account.Credentials.from_service_account_file(extra["key_path"])
            project = project or credentials.project_id
        elif endpoint:
            credentials = AnonymousCredentials()
        options = {"api_endpoint": endpoint} if endpoint else None
        return storage.Client(project=project or "cdp", credentials=credentials, client_options=options)

    def _blob(self, name: str) -> Any:
        return self.client.bucket(self.bucket_name).blob(self._name(name), chunk_size=self.chunk_size)

    def _put(self, local_path: str, name: str, sha256: str) -> None:
        blob = self._blob(name)
        blob.metadata = {"sha256": sha256}
        if os.path.getsize(local_path) <= self.chunk_size:
            blob.chunk_size = None  # one multipart request
        # retry=None: our tenacity policy owns the retries (one budget, logged).
        blob.upload_from_filename(local_path, retry=None, timeout=self.retry.timeout, checksum="crc32c")

    def _remote(self, blob: Any) -> RemoteFile:
        name = blob.name[len(self.prefix) + 1:] if self.prefix else blob.name
        return RemoteFile(name=name, size=int(blob.size), sha256=(blob.metadata or {}).get("sha256"),
                          location=self.location(name))

    def _stat(self, name: str) -> RemoteFile | None:
        blob = self.client.bucket(self.bucket_name).get_blob(self._name(name), retry=None, timeout=self.retry.timeout)
        return self._remote(blob) if blob is not None else None

    def _list(self) -> list[RemoteFile]:
        folder = f"{self.prefix}/" if self.prefix else ""
        blobs = self.client.list_blobs(self.bucket_name, prefix=folder, delimiter="/", retry=None,
                                       timeout=self.retry.timeout)
        return [self._remote(b) for b in blobs if b.name != folder]

    def _get(self, name: str, local_path: str) -> None:
        self._blob(name).download_to_filename(local_path, retry=None, timeout=self.retry.timeout)

    def _delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self.client.bucket(self.bucket_name).delete_blob(self._name(name), retry=None,
                                                            timeout=self.retry.timeout)
        except NotFound:
            if self.client.bucket(self.bucket_name).exists(retry=None, timeout=self.retry.timeout):
                return
            raise

    def _cleanup_temporary(self) -> int:
        # Unfinished resumable uploads are not objects and cannot be listed: nothing is visible to remove.
        # Touch the bucket so that a missing bucket or bad credentials surface here, as for the other targets.
        self.client.bucket(self.bucket_name).reload(retry=None, timeout=self.retry.timeout)
        return 0

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _classify(self, exc: Exception) -> Failure:
        import requests
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import DefaultCredentialsError, RefreshError, TransportError
        from google.resumable_media import common as media

        conn = self._connection_hint()
        for err in exception_chain(exc):
            if isinstance(err, gexc.NotFound) and "bucket" in str(err).lower():
                return Failure(False, f"bucket '{self.bucket_name}' does not exist",
                               "Create the bucket or fix `bucket` in the destination")
            if isinstance(err, gexc.TooManyRequests):
                return Failure(True, "throttled (HTTP 429)", self.transient_hint())
            if isinstance(err, gexc.ServerError):
                return Failure(True, f"HTTP {err.code}", self.transient_hint())
            if isinstance(err, gexc.Forbidden | gexc.Unauthorized | RefreshError | DefaultCredentialsError):
                return Failure(False, f"access denied ({type(err).__name__})",
                               f"Check the service account of {conn} and its rights on gs://{self.bucket_name}")
            if isinstance(err, media.InvalidResponse):
                status = int(err.response.status_code)
                if status == 429 or status >= 500:
                    return Failure(True, f"HTTP {status}", self.transient_hint())
                return Failure(False, f"HTTP {status}", f"Check the destination and {conn}")
            if isinstance(err, requests.exceptions.ConnectionError | TransportError):
                return Failure(True, network_failure(err) or "connection failed", self.transient_hint())
            if isinstance(err, requests.exceptions.Timeout):
                return Failure(True, "timed out", self.transient_hint())
            if isinstance(err, gexc.GoogleAPICallError):
                return Failure(False, f"HTTP {err.code}: {err.message}", f"Check the destination and {conn}")
        reason = network_failure(exc)
        if reason:
            return Failure(True, reason, self.transient_hint())
        return Failure(False, f"{type(exc).__name__}: {exc}", f"Check the destination and {conn}")
