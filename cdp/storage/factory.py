"""One factory from plain parameters (a destination's type, connection and location) to a Transport."""

from __future__ import annotations

import os

from cdp.errors import DestinationError
from cdp.storage.base import RetryPolicy, Transport

KINDS: tuple[str, ...] = ("local", "s3", "azure_blob", "gcs", "sftp")


def open_transport(
    kind: str,
    connection_id: str | None,
    *,
    bucket: str | None = None,
    container: str | None = None,
    path: str = "",
    root: str | None = None,
    sse: str | None = None,
    kms_key_id: str | None = None,
    retry: RetryPolicy | None = None,
    part_size: int | None = None,
) -> Transport:
    """The transport for one destination.

    :param kind: ``local`` | ``s3`` | ``azure_blob`` | ``gcs`` | ``sftp``.
    :param connection_id: the Airflow connection with the credentials (unused for ``local``).
    :param bucket: s3 and gcs; ``container``: azure_blob.
    :param path: the folder inside the bucket / container / server (for ``local``: inside ``root``).
    :param root: ``local`` only: the exports root the landing zone lives under.
    :param sse: s3 only: ``AES256`` or ``aws:kms`` (with ``kms_key_id``).
    :param part_size: the multipart / block / chunk size (and threshold) for s3, azure_blob and gcs.
    """
    from cdp.storage.base import join_prefix

    if kind == "local":
        from cdp.storage.local import LocalTransport

        if not root:
            raise DestinationError("a local destination needs the exports root")
        folder = join_prefix(path)
        return LocalTransport(os.path.join(root, folder) if folder else root, retry=retry)
    if kind == "s3":
        from cdp.storage.s3 import S3Transport

        if sse not in (None, "AES256", "aws:kms"):
            raise DestinationError(f"s3://{bucket}: sse must be 'AES256' or 'aws:kms', got {sse!r}")
        parts = {} if part_size is None else {"multipart_threshold": part_size, "multipart_chunk": part_size}
        return S3Transport(connection_id, bucket or "", path, sse=sse, kms_key_id=kms_key_id,  # type: ignore[arg-type]
                           retry=retry, **parts)
    if kind == "azure_blob":
        from cdp.storage.azure_blob import AzureBlobTransport

        blocks = {} if part_size is None else {"block_size": part_size}
        return AzureBlobTransport(connection_id, container or "", path, retry=retry, **blocks)
    if kind == "gcs":
        from cdp.storage.gcs import GcsTransport

        chunks = {} if part_size is None else {"chunk_size": part_size}
        return GcsTransport(connection_id, bucket or "", path, retry=retry, **chunks)
    if kind == "sftp":
        from cdp.storage.sftp import SftpTransport

        return SftpTransport(connection_id or "", path, retry=retry)
    raise DestinationError(f"unknown destination type {kind!r} (one of: {', '.join(KINDS)})")

