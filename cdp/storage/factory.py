"""One factory from plain parameters (a destination's type, connection and location) to a Transport."""

from __future__ import annotations

from typing import Literal

from cdp.errors import DestinationError
from cdp.storage.base import RetryPolicy, Transport

Kind = Literal["local", "s3", "azure_blob", "gcs", "sftp"]
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

    sizes = {} if part_size is None else {"size": part_size}
    if kind == "local":
        import os

        if not root:
            raise DestinationError("a local destination needs the exports root")
        return _local(os.path.join(root, join_prefix(path)) if join_prefix(path) else root, retry)
    if kind == "s3":
        from cdp.storage.s3 import S3Transport

        if sse not in (None, "AES256", "aws:kms"):
            raise DestinationError(f"s3://{bucket}: sse must be 'AES256' or 'aws:kms', got {sse!r}")
        extra = {"multipart_threshold": sizes["size"], "multipart_chunk": sizes["size"]} if sizes else {}
        return S3Transport(connection_id, bucket or "", path, sse=sse, kms_key_id=kms_key_id,  # type: ignore[arg-type]
                           retry=retry, **extra)
    if kind == "azure_blob":
        from cdp.storage.azure_blob import AzureBlobTransport

        return AzureBlobTransport(connection_id, container or "", path, retry=retry,
                                  **({"block_size": sizes["size"]} if sizes else {}))
    if kind == "gcs":
        from cdp.storage.gcs import GcsTransport

        return GcsTransport(connection_id, bucket or "", path, retry=retry,
                            **({"chunk_size": sizes["size"]} if sizes else {}))
    if kind == "sftp":
        from cdp.storage.sftp import SftpTransport

        return SftpTransport(connection_id or "", path, retry=retry)
    raise DestinationError(f"unknown destination type {kind!r} (one of: {', '.join(KINDS)})")


def _local(folder: str, retry: RetryPolicy | None) -> Transport:
    from cdp.storage.local import LocalTransport

    return LocalTransport(folder, retry=retry)
