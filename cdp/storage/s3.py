"""Amazon S3 and S3-compatible stores, through the Amazon provider's ``S3Hook``.

An object appears only once complete: a single PUT below the multipart threshold, otherwise a
multipart upload that becomes an object only when completed (s3transfer aborts it on a failure; a
killed process leaves it incomplete, and :meth:`S3Transport.cleanup_temporary` aborts it).
"""

from __future__ import annotations

from typing import Any, Literal

from cdp.errors import DestinationError
from cdp.storage.base import Failure, RemoteFile, RetryPolicy, Transport, exception_chain, join_prefix, network_failure
from cdp.storage.connections import get_connection

SSE = Literal["AES256", "aws:kms"]
MB = 1024 * 1024
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
_TRANSIENT_CODES = {"RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
                    "503", "500", "502", "504"}
_NOT_FOUND = {"NoSuchBucket"}
_AUTH = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
         "AllAccessDisabled", "AccountProblem", "KMS.AccessDeniedException", "403"}


class S3Transport(Transport):
    """Objects under ``s3://bucket/prefix/``.

    Connection (type ``aws``): login / password = access key id / secret (or any credential source the
    provider supports: role, profile, instance metadata); extra ``region_name``; for S3-compatible
    stores extra ``endpoint_url`` and ``addressing_style: path`` (or the provider's own
    ``config_kwargs: {"s3": {"addressing_style": "path"}}``).

    :param sse: server-side encryption ``AES256`` (SSE-S3) or ``aws:kms`` (SSE-KMS, with ``kms_key_id``).
    :param multipart_threshold: files above this many bytes go as a multipart upload of ``multipart_chunk`` parts.
    """

    kind = "s3"

    def __init__(self, connection_id: str | None, bucket: str, prefix: str = "", *,
                 sse: SSE | None = None, kms_key_id: str | None = None,
                 multipart_threshold: int = 64 * MB, multipart_chunk: int = 16 * MB,
                 retry: RetryPolicy | None = None) -> None:
        if not bucket:
            raise DestinationError("an s3 destination needs a bucket")
        if kms_key_id and sse != "aws:kms":
            raise DestinationError(f"s3://{bucket}: kms_key_id is set but sse is {sse!r}: set sse to 'aws:kms'")
        if sse not in (None, "AES256", "aws:kms"):
            raise DestinationError(f"s3://{bucket}: sse must be 'AES256' or 'aws:kms', got {sse!r}")
        self.bucket = bucket
        self.prefix = join_prefix(prefix)
        super().__init__(f"s3://{join_prefix(bucket, self.prefix)}", connection_id, retry or RetryPolicy())
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.multipart_threshold = multipart_threshold
        self.multipart_chunk = multipart_chunk
        self._client: Any = None

    def _key(self, name: str) -> str:
        return join_prefix(self.prefix, name)

    @property
    def client(self) -> Any:
        """The boto3 S3 client from the connection (built once)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.config import Config

        extra: dict[str, Any] = {}
        if self.connection_id:
            conn = get_connection(self.connection_id)
            extra = conn.extra_dejson
            self._add_secret(conn.password, extra.get("aws_secret_access_key"), extra.get("aws_session_token"))
        hook = S3Hook(aws_conn_id=self.connection_id)
        # Our tenacity policy owns the retries (one budget, logged); botocore's own are off.
        ours = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                      connect_timeout=self.retry.timeout, read_timeout=self.retry.timeout)
        style = extra.get("addressing_style")
        if style:
            ours = ours.merge(Config(s3={"addressing_style": style}))
        base = hook.conn_config.botocore_config
        config = base.merge(ours) if base is not None else ours
        return hook.get_client_type(config=config)

    def _extra_args(self, sha256: str) -> dict[str, Any]:
        args: dict[str, Any] = {"Metadata": {"sha256": sha256}}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    def _put(self, local_path: str, name: str, sha256: str) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=self.multipart_threshold,
                                  multipart_chunksize=self.multipart_chunk, max_concurrency=4)
        self.client.upload_file(local_path, self.bucket, self._key(name), ExtraArgs=self._extra_args(sha256),
                                Config=transfer)

    def _remote(self, name: str, size: int, metadata: dict[str, str] | None) -> RemoteFile:
        return RemoteFile(name=name, size=size, sha256=(metadata or {}).get("sha256"), location=self.location(name))

    def _stat(self, name: str) -> RemoteFile | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            if _status(exc) == 404 and _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return self._remote(name, int(head["ContentLength"]), head.get("Metadata"))

    def _list(self) -> list[RemoteFile]:
        folder = f"{self.prefix}/" if self.prefix else ""
        files = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/"):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(folder):]
                if name:
                    # The listing has no user metadata; the ledger's checksum is read with stat() where needed.
                    files.append(RemoteFile(name=name, size=int(obj["Size"]), sha256=None,
                                            location=self.location(name)))
        return files

    def _get(self, name: str, local_path: str) -> None:
        self.client.download_file(self.bucket, self._key(name), local_path)

    def _delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def _cleanup_temporary(self) -> int:
        folder = f"{self.prefix}/" if self.prefix else ""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
            for upload in page.get("Uploads", []):
                if "/" in upload["Key"][len(folder):]:
                    continue  # a sub-folder is not ours
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
        return aborted

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _classify(self, exc: Exception) -> Failure:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )
        from botocore.exceptions import ConnectTimeoutError as BotoConnectTimeout

        conn = self._connection_hint()
        for err in exception_chain(exc):
            if isinstance(err, EndpointConnectionError):
                # botocore keeps the socket error in kwargs, not as the cause.
                cause = err.kwargs.get("error")
                reason = network_failure(cause) if isinstance(cause, BaseException) else None
                return Failure(True, reason or "could not connect", self.transient_hint())
            if isinstance(err, ReadTimeoutError | BotoConnectTimeout):
                return Failure(True, "timed out", self.transient_hint())
            if isinstance(err, ConnectionClosedError):
                return Failure(True, "connection lost", self.transient_hint())
            if isinstance(err, NoCredentialsError):
                return Failure(False, "no AWS credentials found",
                               f"Set the access key in {conn} (login / password) or give the worker a role")
            if isinstance(err, ClientError):
                code, status = _code(err), _status(err)
                if code in _THROTTLED or status == 429:
                    return Failure(True, f"throttled ({code or status})", self.transient_hint())
                if code in _TRANSIENT_CODES or (status is not None and status >= 500):
                    return Failure(True, f"HTTP {status} {code}".strip(), self.transient_hint())
                if code in _NOT_FOUND:
                    return Failure(False, f"bucket '{self.bucket}' does not exist",
                                   "Create the bucket or fix `bucket` in the destination")
                if code in _AUTH or status == 403:
                    return Failure(False, f"access denied ({code})",
                                   f"Check the credentials of {conn} and that they may write to s3://{self.bucket}")
                return Failure(False, f"{code or status}: {err.response.get('Error', {}).get('Message', '')}".strip(),
                               f"Check the destination and {conn}")
        reason = network_failure(exc)
        if reason:
            return Failure(True, reason, self.transient_hint())
        return Failure(False, f"{type(exc).__name__}: {exc}", f"Check the destination and {conn}")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: Any) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None
