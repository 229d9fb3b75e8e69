"""The batch ledger: one row per landed file and run, content hashes and duplicate-file detection."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp import small_tables
from cdp.delta_io import read_table, table_exists
from cdp.ingestion.layout import UnreadableFile
from cdp.ingestion.reasons import (
    DUPLICATE_FILE,
    STATUS_DUPLICATE,
    STATUS_INGESTED,
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_STAGED,
    STATUS_UNREADABLE,
)
from cdp.lake import BATCH_LEDGER, Lake

log = logging.getLogger(__name__)

# Statuses of a file whose records reached (or reach, once ingest runs) the dataset table.
INGESTED_STATUSES = (STATUS_INGESTED, STATUS_OK)


# Files and objects are hashed block by block: memory stays one block, whatever their size.
HASH_BLOCK = 1 << 20


def file_sha256(path: str) -> str:
    """The hex SHA-256 of a local file's bytes (read in 1 MiB blocks, so memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(blocks: Iterable[bytes]) -> str | None:
    """The hex SHA-256 of a content given block by block (a stream's chunks), None when it has no byte.

    An empty landed file gets no hash: it holds no record to ingest twice, so it is never a duplicate.
    """
    digest = hashlib.sha256()
    size = 0
    for block in blocks:
        digest.update(block)
        size += len(block)
    return digest.hexdigest() if size else None


def ingested_hashes(spark: SparkSession, lake: Lake, dataset: str, run_date: dt.date,
                    hashes: Sequence[str]) -> dict[str, tuple[str, dt.date]]:
    """Which of ``hashes`` a file of another run date already brought in: ``{sha256: (source file, batch date)}``.

    Only files whose records are in the dataset table count (status ``ingested``, set by ingest; ``ok``
    in ledgers written before): a file that was only validated, whose ingestion failed, is loaded again
    when it is delivered again; a rejected, unreadable or duplicate file loaded nothing. The run date's
    own rows never count, so re-running a day is not a duplicate of itself.
    The earliest (batch date, source file) is named.
    """
    path = lake.path(BATCH_LEDGER)
    if not hashes or not table_exists(spark, path):
        return {}
    ledger = read_table(spark, path)
    if "sha256" not in ledger.columns:  # a ledger written before hashes were recorded
        return {}
    rows = (ledger.where((F.col("dataset") == dataset) & (F.col("batch_date") != F.lit(run_date))
                         & F.col("status").isin(*INGESTED_STATUSES) & F.col("sha256").isin(sorted(set(hashes))))
            .select("sha256", "source_file", "batch_date").collect())
    found: dict[str, tuple[str, dt.date]] = {}
    for row in sorted(rows, key=lambda r: (r["batch_date"], r["source_file"])):
        found.setdefault(row["sha256"], (row["source_file"], row["batch_date"]))
    return found


def find_duplicate_files(files: Sequence[str], hashes: Mapping[str, str],
                         ingested: Mapping[str, tuple[str, dt.date]], run_date: dt.date) -> list[UnreadableFile]:
    """The files (in ``files`` order) whose records must not be read because their content is ingested elsewhere.

    A file is a duplicate when ``ingested`` (see ingested_hashes) has its hash, or when an earlier
    file of this run has the same hash. Files without a hash in ``hashes`` (empty files) are never
    duplicates.
    """
    duplicates: list[UnreadableFile] = []
    first_here: dict[str, str] = {}
    for path in files:
        digest = hashes.get(path)
        if digest is None:
            continue
        if digest in ingested:
            original, day = ingested[digest]
        elif digest in first_here:
            original, day = first_here[digest], run_date
        else:
            first_here[digest] = path
            continue
        duplicates.append(UnreadableFile(path, f"file has the same content (sha256 {digest}) as {original}, "
                                         f"ingested with the batch of {day.isoformat()}: its records are not "
                                         "ingested twice", DUPLICATE_FILE))
    return duplicates



@dataclass(frozen=True)
class FileCounts:
    """Records read and quarantined in one landed file."""

    read: int
    quarantined: int
    identities_dropped: int = 0


def ledger_rows(files: Sequence[str], counts: dict[str, FileCounts], unreadable: Sequence[UnreadableFile],
                dataset: str, run_date: dt.date, run_id: str, rejected: bool,
                hashes: Mapping[str, str] | None = None) -> list[tuple[object, ...]]:
    """Batch-ledger rows, one per landed file in listing order (BATCH_LEDGER.schema), with its content hash.

    An accepted file is ``staged``: ingest marks it ``ingested`` once its records are in the dataset table.
    """
    broken = {u.path: u.code for u in unreadable}
    hashes = hashes or {}
    rows: list[tuple[object, ...]] = []
    for path in files:
        if path in broken:
            # The whole file is one quarantined "record": read = valid + quarantined still holds.
            status = STATUS_DUPLICATE if broken[path] == DUPLICATE_FILE else STATUS_UNREADABLE
            rows.append((dataset, run_date, path, 1, 0, 1, status, run_id, hashes.get(path), 0))
            continue
        c = counts.get(path, FileCounts(0, 0))
        rows.append((dataset, run_date, path, c.read, c.read - c.quarantined, c.quarantined,
                     STATUS_REJECTED if rejected else STATUS_STAGED, run_id, hashes.get(path), c.identities_dropped))
    return rows




def mark_ingested(lake: Lake, dataset: str, run_date: dt.date) -> int:
    """Mark the run date's staged files of ``dataset`` as ingested (their records are in the dataset table).

    Called by ingest after its MERGE: only then may a re-delivery of the same content be refused as a
    duplicate. Returns how many files were marked.
    """
    return small_tables.update_rows(lake.path(BATCH_LEDGER),
                                    {"dataset": dataset, "batch_date": run_date, "status": STATUS_STAGED},
                                    {"status": STATUS_INGESTED})
