"""Rendering a destination's rows as files: CSV, JSON lines or Parquet, written by Spark, split, named, hashed.

Each file's rows are written by Spark as one sorted partition (by profile id) into a staging folder
of the run, split every ``split_rows`` rows (``maxRecordsPerFile``: the parts fill in order), then
renamed ``name.csv``, ``name_2.csv``, ... The same run date and lake give byte-identical files: the
rows, their order, the writer's options and the codec are all fixed (no clock, no random name reaches
a file), so the SHA-256 the ledger records proves what was sent. No file needs to fit in the
driver's memory: Spark writes it, the transport streams it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from cdp import lake_files
from cdp.destinations.rows import PROFILE
from cdp.ingestion.ledger import file_sha256
from cdp.workspace.models import FileDestination

_PART = re.compile(r"^part-(\d+)-.*?-c(\d+)(\..+)?$")


@dataclass(frozen=True)
class RenderedFile:
    """One file ready to deliver: its final name, what it holds, and where it waits on local disk."""

    name: str
    audience_id: str | None  # None: a combined file or the manifest
    rows: int
    bytes: int
    sha256: str
    local_path: str
    kind: str = "data"  # data | manifest


def split_name(name: str, extension: str, part: int) -> str:
    """``name`` for the first part, ``<stem>_<part>.<ext>`` for the next ones (``a.csv.gz`` -> ``a_2.csv.gz``)."""
    if part == 1:
        return name
    return f"{name[: len(name) - len(extension)]}_{part}{extension}"


def writer_options(dest: FileDestination) -> dict[str, str]:
    """The Spark writer options of the destination's format (values are exported as they are: no trimming)."""
    codec = dest.effective_compression
    if dest.format == "csv":
        csv = dest.csv
        return {"sep": csv.delimiter, "quote": csv.quote, "escape": csv.escape, "nullValue": csv.null_value,
                "emptyValue": csv.empty_value, "header": str(csv.header).lower(), "dateFormat": csv.date_format,
                "timestampFormat": csv.timestamp_format, "timeZone": "UTC", "encoding": "UTF-8", "lineSep": "\n",
                # Spark's CSV writer trims leading and trailing spaces by default: a value is sent as it is.
                "ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false",
                "escapeQuotes": "true", "compression": "gzip" if codec == "gzip" else "none"}
    if dest.format == "jsonl":
        return {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'", "dateFormat": "yyyy-MM-dd", "timeZone": "UTC",
                "ignoreNullFields": "false", "encoding": "UTF-8", "lineSep": "\n",
                "compression": "gzip" if codec == "gzip" else "none"}
    return {"compression": "snappy" if codec == "snappy" else "none"}


def render_file(rows: DataFrame, columns: Sequence[str], headers: Sequence[str], dest: FileDestination, name: str,
                folder: str, audience_id: str | None, written: Callable[[], int] | None = None,
                spark_folder: str | None = None) -> list[RenderedFile]:
    """Write ``rows`` (internal ``columns`` renamed to ``headers``, sorted by profile id) as the file ``name``
    (and its split parts) into ``folder``; return the files in part order.

    ``written`` tells how many rows the write wrote (an observation of it) when ``rows`` is not cached, so that
    they are not computed a second time to be counted; by default they are counted.

    ``spark_folder``: where Spark writes the parts when that is not ``folder`` (a lake on S3, which every
    executor of a cluster can reach): the parts are then fetched from there into ``folder`` for the transport.
    """
    work = os.path.join(spark_folder or folder, f".spark-{name}")
    lake_files.remove_tree(work)
    ordered = rows.repartition(1).sortWithinPartitions(PROFILE).select(*columns).toDF(*headers)
    writer = ordered.write.mode("overwrite").options(**writer_options(dest)).option("maxRecordsPerFile",
                                                                                    str(dest.split_rows))
    if dest.format == "csv":
        writer.csv(work)
    elif dest.format == "jsonl":
        writer.json(work)
    else:
        writer.parquet(work)
    # part-<task>-<uuid>-c<n>: one task (one partition) writes the parts in row order, c000, c001, ...
    found = [(m, n) for n in lake_files.list_names(work) if (m := _PART.match(n))]
    parts = sorted(((int(m.group(1)), int(m.group(2))), n) for m, n in found)
    total = written() if written is not None else rows.count()
    out: list[RenderedFile] = []
    for index, (_, part) in enumerate(parts, start=1):
        final = os.path.join(folder, split_name(name, dest.extension, index))
        lake_files.fetch(f"{work}/{part}", final)
        part_rows = min(dest.split_rows, total - (index - 1) * dest.split_rows)
        out.append(RenderedFile(os.path.basename(final), audience_id, max(part_rows, 0), os.path.getsize(final),
                                file_sha256(final), final))
    lake_files.remove_tree(work)
    return out


def render_manifest(dest: FileDestination, run_date: str, run_id: str, files: Sequence[RenderedFile],
                    name: str, folder: str, encryption: dict[str, str] | None = None) -> RenderedFile:
    """The manifest (JSON, delivered after every data file): destination, run, audiences, and each file's
    name, rows, bytes and SHA-256 (of the file as rendered: for encrypted files, once decrypted), and the
    encryption (type and recipient key fingerprint) when the files are encrypted."""
    document: dict[str, Any] = {
        "destination": dest.name, "type": dest.type_name, "run_date": run_date, "run_id": run_id,
        "format": dest.format, "compression": dest.effective_compression, "audiences": list(dest.audiences),
        "files": [{"name": f.name, "audience_id": f.audience_id, "rows": f.rows, "bytes": f.bytes,
                   "sha256": f.sha256} for f in files],
    }
    if encryption is not None:
        document["encryption"] = encryption
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return RenderedFile(name, None, len(files), os.path.getsize(path), file_sha256(path), path, kind="manifest")
