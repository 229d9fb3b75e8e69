"""Where a dataset's files land for a run date, listing them, and reading them in place.

Files landed on S3 are never copied to the driver's disk: Spark reads each object where it is, through Hadoop's
S3A connector (:func:`spark_location`), on whichever machine runs the task (an executor of a cluster too), and
the driver streams each one once with boto3 to hash it (:func:`landed_hashes`). Endpoint and credentials come
from the environment (``CDP_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL*``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
or the machine's role), the same for boto3 and S3A.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from cdp.errors import LandingError, S3ConnectorMissingError
from cdp.ingestion.ledger import HASH_BLOCK, content_sha256
from cdp.lake_files import s3_client
from cdp.settings import Settings
from cdp.spark_conf import S3A_IMPL
from cdp.workspace.models import DatasetSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def landing_folder(settings: Settings, dataset: DatasetSpec, run_date: dt.date) -> str:
    """The folder a dataset's files land in for a run date (``s3://bucket/prefix`` for an S3 source)."""
    relative = dataset.source.path.format(date=run_date.isoformat()).strip("/")
    if dataset.source.type == "s3":
        return f"s3://{dataset.source.bucket}/{relative}"
    return f"{settings.landing.rstrip('/')}/{relative}"


def _landed_name(name: str) -> bool:
    """Whether a file name is data (not hidden, not a marker such as ``_SUCCESS`` or ``.crc``)."""
    return bool(name) and not name.startswith((".", "_"))


def list_landed_files(settings: Settings, dataset: DatasetSpec, run_date: dt.date) -> list[str]:
    """The files landed for a dataset and run date, sorted by path (``s3://`` URIs for an S3 source).

    Hidden files and markers (``.crc``, ``_SUCCESS``) and sub-folders are skipped. A missing
    folder means nothing landed that day: a warning, not an error, so a quiet day does not fail
    the run.
    """
    folder = landing_folder(settings, dataset, run_date)
    if dataset.source.type == "s3":
        return _list_s3(dataset, folder)
    scheme = urlparse(folder).scheme
    if scheme not in ("", "file"):
        raise LandingError(f"dataset {dataset.name}: cannot list {folder}: a local source needs a local landing "
                           "root (use source.type: s3 with a bucket for S3)")
    local = Path(urlparse(folder).path if scheme == "file" else folder)
    if not local.is_dir():
        log.warning("dataset %s: landing folder %s does not exist: no files for %s", dataset.name, local, run_date)
        return []
    files = sorted(str(p) for p in local.iterdir() if p.is_file() and _landed_name(p.name))
    if not files:
        log.warning("dataset %s: landing folder %s is empty", dataset.name, local)
    return files


def _list_s3(dataset: DatasetSpec, folder: str) -> list[str]:
    parsed = urlparse(folder)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/") + "/"
    uris: list[str] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if "/" not in name and _landed_name(name):  # objects "in sub-folders" are not the day's files
                    uris.append(f"s3://{bucket}/{obj['Key']}")
    except (BotoCoreError, ClientError) as exc:
        raise LandingError(f"dataset {dataset.name}: cannot list {folder}: {exc} (check the bucket name in the "
                           "dataset's source and the AWS_* environment variables)") from exc
    if not uris:
        log.warning("dataset %s: nothing landed under %s", dataset.name, folder)
    return sorted(uris)


def on_s3(path: str) -> bool:
    """True for a landed file listed as an ``s3://`` URI (a dataset whose source is ``type: s3``)."""
    return urlparse(path).scheme == "s3"


def spark_location(path: str) -> str:
    """Where Spark reads a listed file in place: an ``s3://`` object through Hadoop's S3A connector (``s3a://``, the
    same bucket and key), a local file where it is. The records keep the listed path as their source file."""
    return "s3a://" + path[len("s3://"):] if on_s3(path) else path


def check_spark_reads_s3(spark: SparkSession, dataset: DatasetSpec, files: Sequence[str]) -> None:
    """Raise S3ConnectorMissingError when a listed file is on S3 and the session has no S3A connector.

    Spark would otherwise fail on the first object with a bare ``ClassNotFoundException`` (and a Parquet file
    would be quarantined as unreadable). A session's jars are fixed when its JVM starts: see
    :func:`cdp.spark_conf.s3a_needs` for how a session learns it needs them.
    """
    on_store = [f for f in files if on_s3(f)]
    if on_store and not spark.conf.get(S3A_IMPL, None):
        raise S3ConnectorMissingError(
            f"dataset {dataset.name}: {on_store[0]} landed on S3, but this Spark session was started without "
            "Hadoop's S3A connector, so Spark cannot read it in place. Sessions load it when CDP_WORKSPACE names "
            "a workspace with a dataset of source type s3 (or CDP_LAKE is s3a://) as they start: restart the "
            "Spark Connect server after changing the workspace (scripts/spark_connect.py stop, then start), check "
            "that CDP_WORKSPACE is the same for the server, the Airflow workers and the job, then clear the task")


def landed_hashes(dataset: DatasetSpec, files: Sequence[str]) -> dict[str, str]:
    """``{listed path: hex SHA-256}`` of the landed files that hold at least one byte (an empty file has no hash).

    A local file is read where it is. An S3 object is streamed from the store on this machine, never written to
    disk: the body of ``get_object`` is read in 1 MiB blocks, so memory stays flat whatever its size.
    """
    hashes: dict[str, str] = {}
    client: Any = None
    for path in files:
        if on_s3(path):
            client = client or s3_client()
            digest = _s3_sha256(client, dataset, path)
        else:
            digest = _local_sha256(dataset, path)
        if digest is not None:
            hashes[path] = digest
    return hashes


def _local_sha256(dataset: DatasetSpec, path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return content_sha256(iter(lambda: handle.read(HASH_BLOCK), b""))
    except OSError as exc:
        raise LandingError(f"dataset {dataset.name}: cannot read {path}: {exc.strerror or exc} (it was listed a "
                           "moment ago: check that nothing moves the day's files while validate runs, and that "
                           "the user running the task may read them)") from exc


def _s3_sha256(client: Any, dataset: DatasetSpec, uri: str) -> str | None:
    parsed = urlparse(uri)
    try:
        body = client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
        try:
            return content_sha256(body.iter_chunks(HASH_BLOCK))
        finally:
            body.close()
    except (BotoCoreError, ClientError) as exc:
        raise LandingError(f"dataset {dataset.name}: cannot read {uri}: {exc} (it was listed a moment ago: check "
                           "that nothing removes the day's objects while validate runs, and that the AWS_* "
                           "environment variables allow s3:GetObject on the bucket)") from exc
