"""Plain files under the lake root, local or on S3 (``s3a://``), for the driver's few non-Spark file steps.

Spark reads and writes the lake through Hadoop (S3A for ``s3a://``). The driver itself only lists, fetches and
removes the parts Spark wrote for an export, so that they can be renamed, hashed and handed to a transport:
with the lake on S3 those parts live in the lake's bucket (every executor of a cluster can write them), and
the driver fetches them with boto3, its credentials and endpoint from the same environment as S3A's
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``CDP_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
import shutil
from typing import Any
from urllib.parse import urlparse

from cdp.errors import LakeFilesError


def is_local(path: str) -> bool:
    """True for a folder of this machine's file system (a plain path or ``file://``)."""
    return urlparse(path).scheme in ("", "file")


def is_s3(path: str) -> bool:
    """True for an ``s3a://`` (or ``s3://``) URL, which the driver reads with boto3."""
    return urlparse(path).scheme in ("s3a", "s3")


def _local(path: str) -> str:
    parsed = urlparse(path)
    return parsed.path if parsed.scheme == "file" else path


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not is_s3(uri):
        raise LakeFilesError(f"{uri}: only local folders and s3a:// URLs are supported as the lake root "
                             "(set CDP_LAKE to a folder or to s3a://bucket/prefix)")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client() -> Any:  # boto3 ships no type stubs
    """An S3 client from the environment: ``CDP_S3_ENDPOINT`` when set, else boto3's own ``AWS_*`` variables.

    The landing's listing and hashing (:mod:`cdp.ingestion.landing`) use it too: one store, as S3A sees it.
    """
    import boto3

    endpoint = os.environ.get("CDP_S3_ENDPOINT") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _keys(bucket: str, prefix: str) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    keys: list[str] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    except (BotoCoreError, ClientError) as exc:
        raise LakeFilesError(f"cannot list s3a://{bucket}/{prefix}: {exc} (check the lake's bucket and the "
                             "AWS_* / CDP_S3_ENDPOINT environment of this task)") from exc
    return keys


def list_names(folder: str) -> list[str]:
    """The names of the files directly in ``folder`` (none when it does not exist), sorted."""
    if is_local(folder):
        local = _local(folder)
        return sorted(n for n in os.listdir(local) if os.path.isfile(os.path.join(local, n))) \
            if os.path.isdir(local) else []
    bucket, prefix = _split(folder)
    prefix = prefix.rstrip("/") + "/"
    return sorted(k[len(prefix):] for k in _keys(bucket, prefix) if "/" not in k[len(prefix):])


def fetch(uri: str, target: str) -> None:
    """Move (local) or download (S3) the file ``uri`` to the local path ``target``."""
    if is_local(uri):
        os.replace(_local(uri), target)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split(uri)
    try:
        s3_client().download_file(bucket, key, target)
    except (BotoCoreError, ClientError) as exc:
        raise LakeFilesError(f"cannot fetch {uri} to {target}: {exc} (check the AWS_* / CDP_S3_ENDPOINT "
                             "environment of this task)") from exc


def remove_tree(folder: str) -> None:
    """Remove ``folder`` and everything under it (nothing happens when it does not exist)."""
    if is_local(folder):
        shutil.rmtree(_local(folder), ignore_errors=True)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = _split(folder)
    keys = _keys(bucket, prefix.rstrip("/") + "/")
    client = s3_client()
    try:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                                                         "Quiet": True})
    except (BotoCoreError, ClientError) as exc:
        raise LakeFilesError(f"cannot remove {folder}: {exc}") from exc
