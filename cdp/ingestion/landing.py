"""Where a dataset's files land for a run date, listing them, and local copies of remote ones."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cdp.errors import LandingError
from cdp.settings import Settings
from cdp.workspace.models import DatasetSpec

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


def _s3_client() -> Any:  # boto3 ships no type stubs
    """An S3 client configured from the environment (AWS_* variables, including AWS_ENDPOINT_URL)."""
    return boto3.client("s3")


def _list_s3(dataset: DatasetSpec, folder: str) -> list[str]:
    parsed = urlparse(folder)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/") + "/"
    uris: list[str] = []
    try:
        for page in _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
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


def download_landed_files(dataset: DatasetSpec, uris: Sequence[str], cache: Path) -> dict[str, str]:
    """Local copies of landed files: ``{listed path: local path}``.

    Local files are read where they are. S3 objects are downloaded into ``cache`` (keeping their
    key as the relative path) so that every format is read by the same local code; records keep
    the ``s3://`` URI as their source file.
    """
    local: dict[str, str] = {}
    client: Any = None
    for uri in uris:
        parsed = urlparse(uri)
        if parsed.scheme != "s3":
            local[uri] = uri
            continue
        client = client or _s3_client()
        target = cache / parsed.netloc / parsed.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            client.download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
        except (BotoCoreError, ClientError) as exc:
            raise LandingError(f"dataset {dataset.name}: cannot download {uri}: {exc}") from exc
        local[uri] = str(target)
    return local



# A killed attempt cannot clean up after itself: its copies are removed by the next attempt, and any
# copy older than this by whichever validate runs next for the dataset.
STALE_COPIES = dt.timedelta(hours=24)


def _copies_root(dataset: str) -> Path:
    return Path(os.environ.get("CDP_SCRATCH", tempfile.gettempdir())) / "cdp-landing" / dataset


@contextlib.contextmanager
def landed_copies(dataset: DatasetSpec, uris: Sequence[str], run_date: dt.date) -> Iterator[dict[str, str]]:
    """Local copies of the landed files for the duration of the block (see download_landed_files).

    Downloaded files hold PII: they live in ``$CDP_SCRATCH/cdp-landing/<dataset>/<run date>`` (default: the
    system's temporary folder), removed when the block ends; a copy left by a killed attempt is removed
    when the next attempt starts, and any older than a day by the next validate of the dataset.
    """
    root = _copies_root(dataset.name)
    folder = root / run_date.isoformat()
    shutil.rmtree(folder, ignore_errors=True)
    if root.is_dir():
        cutoff = dt.datetime.now(dt.UTC).timestamp() - STALE_COPIES.total_seconds()
        for other in root.iterdir():
            if other.stat().st_mtime < cutoff:
                shutil.rmtree(other, ignore_errors=True)
    try:
        yield download_landed_files(dataset, uris, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
