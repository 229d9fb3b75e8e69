"""Validate one dataset's landed files for a run date (step ``validate``).

Every landed record either passes every check and goes to ``staging/<dataset>`` typed by its
schema, or goes to the quarantine table with *all* the reasons that apply. The batch ledger gets
one row per landed file so that rows read = rows valid + rows quarantined can be reconciled.

Reason codes are stable strings (dashboards and alerts key on them):

==================== ======= ===========================================================
code                 field   when
==================== ======= ===========================================================
malformed_record     -       unparsable JSON line, JSON that is not an object, wrong CSV
                             column count, CSV quoted field never closed (the only reason such a
                             record gets; a CSV record may span lines, RFC 4180)
file_unreadable      -       a Parquet file that cannot be read (one row, no row number)
duplicate_file       -       a file whose content (sha256) was already ingested by another run
                             date, or is landed twice in one run (one row, no row number; its
                             records are not read)
missing_required     yes     a required field (or a profile's primary identity) is absent
wrong_type           yes     a value that does not cast to the declared type
number_overflow      yes     a well-formed integer / long / decimal outside the type's range
not_in_enum          yes     a value outside the declared enumeration
bad_format           yes     an email / phone / uri that does not look like one
future_timestamp     yes     the schema's timestamp_field later than the end of the run day
                             plus guardrails.max_future_skew_minutes
bad_identity_format  yes     a normalised identity value that does not fully match its
                             namespace's ``pattern`` (an ECID is 38 digits)
blocked_identity     yes     an identity value listed in guardrails.blocked_identity_values
                             or fully matching one of guardrails.blocked_patterns
identity_too_long    yes     an identity value longer than guardrails.max_identity_length
no_identity          -       none of the schema's identity fields has a value
too_many_identities  -       more identity values than guardrails.max_identities_per_record
record_too_large     -       the raw record (UTF-8 bytes of the line; a Parquet row as JSON)
                             over guardrails.max_event_bytes / max_profile_record_bytes
duplicate_event_id   yes     an event id seen earlier in the same batch, or already stored in
                             the dataset table by an earlier batch date
==================== ======= ===========================================================

A value that is null or only whitespace counts as absent everywhere (CSV has no other way to
say "no value", and JSON producers often send ``""`` for it).

If more than ``guardrails.max_rejected_share`` of the batch is quarantined, the batch is
rejected: quarantine and ledger are written, the staging slice is written empty (so ingest
cannot load a failed batch) and :class:`~cdp.errors.BatchRejectedError` is raised.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.datasets import STORED_BATCH_DATE, STORED_ID, stored_event_ids
from cdp.delta_io import read_table, record_metrics, replace_slice, table_exists
from cdp.errors import BatchRejectedError, CdpError, LandingError
from cdp.identities import normalize
from cdp.lake import BATCH_LEDGER, DATASET, QUARANTINE, STAGING, Lake, date_literal
from cdp.run_context import RunContext, job_parser, parse_job_args
from cdp.schema_evolution import check_against_table
from cdp.schemas import BATCH_DATE, RECORD_TS, ROW_NUMBER, SOURCE_FILE, dataset_struct, spark_type
from cdp.settings import Settings
from cdp.spark import get_session
from cdp.workspace.loader import Workspace
from cdp.workspace.models import CsvOptions, DatasetSpec, FieldSpec, Guardrails, Namespace, SchemaSpec

log = logging.getLogger(__name__)

STEP = "validate"

# Reason codes.
MALFORMED_RECORD = "malformed_record"
FILE_UNREADABLE = "file_unreadable"
MISSING_REQUIRED = "missing_required"
WRONG_TYPE = "wrong_type"
NOT_IN_ENUM = "not_in_enum"
BAD_FORMAT = "bad_format"
NO_IDENTITY = "no_identity"
BLOCKED_IDENTITY = "blocked_identity"
IDENTITY_TOO_LONG = "identity_too_long"
DUPLICATE_EVENT_ID = "duplicate_event_id"
NUMBER_OVERFLOW = "number_overflow"
FUTURE_TIMESTAMP = "future_timestamp"
BAD_IDENTITY_FORMAT = "bad_identity_format"
TOO_MANY_IDENTITIES = "too_many_identities"
RECORD_TOO_LARGE = "record_too_large"
DUPLICATE_FILE = "duplicate_file"

# Ledger statuses.
STATUS_OK = "ok"
STATUS_REJECTED = "rejected"
STATUS_UNREADABLE = "unreadable"
STATUS_DUPLICATE = "duplicate"

# Columns of the "parsed" layout every format is brought to before the checks run. Declared
# values live inside structs so that a declared field can never collide with these names.
LINE = "_line"
RAW = "_raw"
MALFORMED = "_malformed"  # why the record could not be parsed at all (null when it could)
STRINGS = "_s"  # every declared field as the string that arrived
TYPED = "_t"  # every declared field cast to its declared type (null when absent or not castable)
REASONS = "_reasons"
_MONO = "_mono"
_CORRUPT = "_corrupt_record"
_UNCLOSED = "_unclosed"  # a CSV record whose quoted field is still open at the end of its file

_PERMISSIVE = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}

# Deliberately simple shapes: they catch values in the wrong column, not every RFC corner.
EMAIL_PATTERN = r"^[^@\s]+@([^@\s.]+\.)+[^@\s.]{2,}$"
PHONE_PATTERN = r"^\+?[0-9 ().-]+$"
PHONE_DIGITS = (7, 15)
URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$"
# Spark's casts accept "2024" as a date and a timestamp; a data engineer means a full date.
DATE_PATTERN = r"^\s*\d{4}-\d{2}-\d{2}\s*$"
TIMESTAMP_PATTERN = r"^\s*\d{4}-\d{2}-\d{2}([T ].*)?$"
# Well-formed numbers: when one of these does not cast, the value is out of range, not of the wrong type.
INTEGER_PATTERN = r"^\s*[+-]?[0-9]+\s*$"
DECIMAL_PATTERN = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_INTEGER_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}

_FORMAT_HINTS = {
    "email": "email address (expected local@domain.tld)",
    "phone": "phone number (expected 7 to 15 digits, optionally a leading +)",
    "uri": "URI (expected a scheme such as https://)",
}
_SHOWN_CHARS = 80


@dataclass(frozen=True)
class UnreadableFile:
    """A landed file whose records are not read (unreadable, or a duplicate); it becomes one quarantine row."""

    path: str
    message: str
    code: str = FILE_UNREADABLE


# ---------------------------------------------------------------- landing


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


# ---------------------------------------------------------------- duplicate files


def file_sha256(path: str) -> str:
    """The hex SHA-256 of a local file's bytes (read in 1 MiB blocks, so memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ingested_hashes(spark: SparkSession, lake: Lake, dataset: str, run_date: dt.date,
                    hashes: Sequence[str]) -> dict[str, tuple[str, dt.date]]:
    """Which of ``hashes`` a file of another run date already brought in: ``{sha256: (source file, batch date)}``.

    Only ledger rows with status ok count (a rejected, unreadable or duplicate file loaded
    nothing); the run date's own rows never do, so re-running a day is not a duplicate of itself.
    The earliest (batch date, source file) is named.
    """
    path = lake.path(BATCH_LEDGER)
    if not hashes or not table_exists(spark, path):
        return {}
    ledger = read_table(spark, path)
    if "sha256" not in ledger.columns:  # a ledger written before hashes were recorded
        return {}
    rows = (ledger.where((F.col("dataset") == dataset) & (F.col("batch_date") != F.lit(run_date))
                         & (F.col("status") == STATUS_OK) & F.col("sha256").isin(sorted(set(hashes))))
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


# ---------------------------------------------------------------- reading (I/O)


def read_text_lines(spark: SparkSession, files: Sequence[str], local: Mapping[str, str] | None = None) -> DataFrame:
    """Every physical line of text files: ``_source_file`` (as listed), ``_mono`` (orders lines in a file), ``value``.

    Each file is read on its own (from its local copy in ``local``, when given) so that its path is
    exactly the listed one. Spark's text reader splits on LF, CRLF and CR and keeps invalid UTF-8
    bytes (cleaned in transform_number_lines).
    """
    local = local or {}
    frames = [
        spark.read.text(local.get(path, path)).select(
            F.lit(path).alias(SOURCE_FILE),
            # partition index << 33 + position in the partition: numbers lines without a Python round trip
            F.monotonically_increasing_id().alias(_MONO),
            F.col("value"),
        )
        for path in files
    ]
    return reduce(DataFrame.union, frames)


def _java_cause(exc: Exception) -> str:
    """The innermost cause of a Spark/Java error, which names what is wrong with the file."""
    text = str(exc)
    causes = re.findall(r"Caused by: ([^\n]+)", text)
    reason = causes[-1] if causes else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return reason.strip()[:300]


def read_parquet_file(spark: SparkSession, path: str, local_path: str | None = None) -> DataFrame | UnreadableFile:
    """One Parquet file with ``_source_file`` and 1-based ``_row_number`` appended, or why it cannot be read.

    ``path`` is the listed path (the source file of the records), ``local_path`` where to read it
    when that differs. Reading the footer (schema inference) is what fails for a truncated or
    non-Parquet file.
    """
    try:
        df = spark.read.parquet(local_path or path)
        data_columns = [F.col(f"`{c}`") for c in df.columns]
        return df.select(*data_columns, F.lit(path).alias(SOURCE_FILE),
                         (F.col("_metadata.row_index") + 1).alias(ROW_NUMBER))
    except (Py4JJavaError, PySparkException) as exc:
        cause = _java_cause(exc)
        log.warning("file %s is not readable as Parquet: %s", path, cause)
        return UnreadableFile(path, f"file cannot be read as Parquet: {cause}")


def read_records(spark: SparkSession, dataset: DatasetSpec, schema: SchemaSpec, files: Sequence[str],
                 local: Mapping[str, str] | None = None) -> tuple[DataFrame, list[UnreadableFile]]:
    """The landed records of a dataset in the parsed layout, and the files that could not be read.

    ``local`` maps a listed path to the local copy to read (see download_landed_files).
    """
    local = local or {}
    unreadable: list[UnreadableFile] = []
    frames: list[DataFrame] = []
    if files and dataset.format == "parquet":
        for path in files:
            read = read_parquet_file(spark, path, local.get(path))
            if isinstance(read, UnreadableFile):
                unreadable.append(read)
            else:
                frames.append(transform_parquet(read, schema))
    elif files:
        # CSV keeps its blank lines: inside a quoted field they are part of a record.
        lines = transform_number_lines(read_text_lines(spark, files, local), keep_blank=dataset.format == "csv")
        if dataset.format == "jsonl":
            frames.append(transform_jsonl(lines, schema))
        else:
            frames.extend(_csv_frames(lines, schema, dataset.csv))
    if not frames:
        return spark.createDataFrame([], parsed_struct(schema)), unreadable
    return reduce(DataFrame.unionByName, frames), unreadable


def _csv_frames(lines: DataFrame, schema: SchemaSpec, options: CsvOptions) -> list[DataFrame]:
    """Parse numbered CSV lines (blank ones included), one parse per distinct header.

    One small job collects, per file, its header (the first non-blank line) and whether any line
    can open a quoted field that it does not close. Only files with such a line can hold a record
    that spans lines; their lines are assembled into records (transform_csv_records), the others
    are parsed line by line, in parallel and without a shuffle.
    """
    opens, _ = _quote_steps(F.col(LINE), options)
    blank = F.col(LINE).rlike(r"^\s*$")
    files = (lines.groupBy(SOURCE_FILE)
             .agg(F.min_by(LINE, F.when(~blank, F.col(ROW_NUMBER))).alias("header"),
                  F.min(F.when(~blank, F.col(ROW_NUMBER))).alias("header_row"),
                  F.max(opens.cast("int")).alias("opens"))
             .collect())
    multiline = sorted(r[SOURCE_FILE] for r in files if r["opens"])
    single = lines.where(~blank & ~F.col(SOURCE_FILE).isin(multiline)) if multiline else lines.where(~blank)
    records = single.withColumn(_UNCLOSED, F.lit(False))
    if multiline:
        records = records.unionByName(transform_csv_records(lines.where(F.col(SOURCE_FILE).isin(multiline)),
                                                            options))
    if not options.header:
        return [transform_csv(records, schema, options, None)]
    header_rows = {r[SOURCE_FILE]: r["header_row"] for r in files if r["header_row"] is not None}
    if header_rows:  # the header line is not a record
        first = F.create_map(*[F.lit(x) for item in sorted(header_rows.items()) for x in item])[F.col(SOURCE_FILE)]
        records = records.where(F.col(ROW_NUMBER) != first)
    by_header: dict[tuple[str, ...], list[str]] = {}
    for row in files:
        if row["header"] is not None:
            by_header.setdefault(tuple(split_csv_header(row["header"], options)), []).append(row[SOURCE_FILE])
    return [transform_csv(records.where(F.col(SOURCE_FILE).isin(paths)), schema, options, list(header))
            for header, paths in sorted(by_header.items())]


def _quote_steps(line: Column, options: CsvOptions) -> tuple[Column, Column]:
    """Whether a line ends inside a quoted field: (when it starts outside one, when it starts inside one).

    RFC 4180: a field is quoted when it starts with the quote character; inside it a doubled
    quote (or the escape character, when it is not the quote) escapes the next character; a
    quote in the middle of an unquoted field (``27" screen``) is literal and opens nothing.
    """
    q, d = re.escape(options.quote), re.escape(options.delimiter)
    if options.escape and options.escape != options.quote:
        e = re.escape(options.escape)
        inner = f"(?:[^{q}{e}]|{q}{q}|{e}[\\s\\S])"
    else:
        inner = f"(?:[^{q}]|{q}{q})"
    other = f"(?:(?!{d})[\\s\\S])"  # any character but the delimiter
    # Possessive quantifiers (*+, ++): a doubled quote is never re-read as a closing quote, and long
    # lines do not backtrack.
    field = f"(?:{q}{inner}*+{q}{other}*+|(?:(?!{q}){other}++)?)"  # quoted (closed) or unquoted, maybe empty
    open_tail = f"{q}{inner}*+$"  # a quoted field still open at the end of the line
    from_outside = f"^(?:{field}{d})*+{open_tail}"
    from_inside = f"^{inner}*+$|^{inner}*+{q}{other}*+{d}(?:{field}{d})*+{open_tail}"
    return line.rlike(from_outside), line.rlike(from_inside)


def transform_csv_records(lines: DataFrame, options: CsvOptions) -> DataFrame:
    """Assemble numbered CSV lines (blank ones included) into records: a quoted field may span lines (RFC 4180).

    Each line maps "inside a quoted field or not" at its start to the same at its end
    (_quote_steps). A line whose end does not depend on its start fixes the state; the others
    keep or flip it, so the state before a line is the last fixed state before it flipped by the
    flips since. A line starts a record when it starts outside a quoted field; a record keeps the
    row number of its first line and joins its lines with ``\\n``. Blank records are dropped;
    ``_unclosed`` marks a record whose quoted field is still open at the end of the file.
    """
    from_outside, from_inside = _quote_steps(F.col(LINE), options)
    in_file = Window.partitionBy(SOURCE_FILE).orderBy(ROW_NUMBER)
    flips = from_outside & ~from_inside
    steps = lines.withColumns({"_out": from_outside, "_in": from_inside, "_flip": flips.cast("int"),
                               "_fixed": from_outside == from_inside})
    steps = steps.withColumn("_flips", F.sum("_flip").over(in_file.rowsBetween(Window.unboundedPreceding, 0)))
    last_fixed = F.last(F.when(F.col("_fixed"), F.struct(F.col("_out").alias("inside"), F.col("_flips").alias("n"))),
                        ignorenulls=True).over(in_file.rowsBetween(Window.unboundedPreceding, -1))
    flips_since = F.col("_flips") - F.col("_flip") - F.coalesce(last_fixed["n"], F.lit(0))
    inside_before = F.coalesce(last_fixed["inside"], F.lit(False)) != (flips_since % 2 == 1)
    steps = steps.withColumn("_inside_before", inside_before)
    steps = steps.withColumn("_inside_after", F.when(F.col("_inside_before"), F.col("_in")).otherwise(F.col("_out")))
    first_row = F.max(F.when(~F.col("_inside_before"), F.col(ROW_NUMBER))).over(
        in_file.rowsBetween(Window.unboundedPreceding, 0))
    grouped = (steps.withColumn("_first", first_row)
               .groupBy(SOURCE_FILE, "_first")
               .agg(F.sort_array(F.collect_list(F.struct(ROW_NUMBER, LINE))).alias("_lines"),
                    F.max_by("_inside_after", ROW_NUMBER).alias(_UNCLOSED)))
    text = F.array_join(F.transform("_lines", lambda x: x[LINE]), "\n")
    return (grouped.select(SOURCE_FILE, F.col("_first").alias(ROW_NUMBER), text.alias(LINE), _UNCLOSED)
            .where(~F.col(LINE).rlike(r"^\s*$")))


def split_csv_header(line: str, options: CsvOptions) -> list[str]:
    """Column names of a CSV header line (trimmed)."""
    if len(options.delimiter) == 1:
        reader = csv.reader([line], delimiter=options.delimiter, quotechar=options.quote,
                            escapechar=options.escape or None)
        names = next(reader, [])
    else:  # Python's csv takes one-character delimiters only; header names rarely need quoting
        names = [n.strip().strip(options.quote) for n in line.split(options.delimiter)]
    return [n.strip() for n in names]


# ---------------------------------------------------------------- transforms (pure)


def parsed_struct(schema: SchemaSpec) -> T.StructType:
    """The layout every format is parsed to: where a record came from, its raw text and its values as strings."""
    return T.StructType([
        T.StructField(SOURCE_FILE, T.StringType(), False),
        T.StructField(ROW_NUMBER, T.LongType(), True),
        T.StructField(RAW, T.StringType(), True),
        T.StructField(MALFORMED, T.StringType(), True),
        T.StructField(STRINGS, _string_struct(schema), True),
    ])


def _string_struct(schema: SchemaSpec) -> T.StructType:
    return T.StructType([T.StructField(f.name, T.StringType(), True) for f in schema.fields])


def transform_number_lines(df: DataFrame, keep_blank: bool = False) -> DataFrame:
    """Number the lines of each file from 1 and clean them; blank lines are dropped (but keep their number).

    Input: ``_source_file``, ``_mono`` (monotonically_increasing_id taken right after the read),
    ``value``. Output: ``_source_file``, ``_row_number``, ``_line``. Within one file Spark reads
    splits in byte order, so (partition, position) orders the lines; the row number is the
    number of lines in the file's earlier partitions plus the position in this one.
    """
    part = F.shiftright(F.col(_MONO), 33)
    counts = df.groupBy(SOURCE_FILE, part.alias("_part")).agg(F.count(F.lit(1)).alias("_n"))
    earlier = Window.partitionBy(SOURCE_FILE).orderBy("_part").rowsBetween(Window.unboundedPreceding, -1)
    offsets = counts.select(SOURCE_FILE, "_part", F.coalesce(F.sum("_n").over(earlier), F.lit(0)).alias("_offset"))
    numbered = df.withColumn("_part", part).join(F.broadcast(offsets), [SOURCE_FILE, "_part"])
    row_number = (F.col("_offset") + F.col(_MONO) - F.shiftleft(F.col("_part"), 33) + 1).cast("long")
    # Invalid UTF-8 bytes become U+FFFD instead of reaching Delta as broken strings.
    line = F.make_valid_utf8(F.col("value"))
    line = F.regexp_replace(line, "\r$", "")
    out = numbered.select(SOURCE_FILE, row_number.alias(ROW_NUMBER), line.alias(LINE))
    # A byte order mark only ever starts a file.
    out = out.withColumn(LINE, F.when(F.col(ROW_NUMBER) == 1, F.regexp_replace(LINE, "^\ufeff", ""))
                         .otherwise(F.col(LINE)))
    return out if keep_blank else out.where(~F.col(LINE).rlike(r"^\s*$"))


def transform_jsonl(lines: DataFrame, schema: SchemaSpec) -> DataFrame:
    """JSON lines (``_source_file``, ``_row_number``, ``_line``) to the parsed layout.

    Every field is read as a string: a number arrives as its text, a nested object or array as
    its JSON text, so the typed cast in transform_check can say exactly what is wrong.
    """
    string_schema = T.StructType([*_string_struct(schema).fields, T.StructField(_CORRUPT, T.StringType(), True)])
    parsed = F.from_json(F.col(LINE), string_schema, _PERMISSIVE)
    malformed = (F.when(parsed.isNull() | parsed[_CORRUPT].isNotNull(),
                        F.when(F.try_parse_json(F.col(LINE)).isNull(), F.lit("line is not valid JSON"))
                        .otherwise(F.lit("line is valid JSON but not an object"))))
    return lines.select(
        SOURCE_FILE, ROW_NUMBER, F.col(LINE).alias(RAW), malformed.alias(MALFORMED),
        F.struct(*[parsed[f.name].alias(f.name) for f in schema.fields]).alias(STRINGS),
    )


def transform_csv(lines: DataFrame, schema: SchemaSpec, options: CsvOptions, header: list[str] | None) -> DataFrame:
    """CSV records (``_source_file``, ``_row_number``, ``_line``, optional ``_unclosed``) to the parsed layout.

    With a ``header`` (whose line the caller has removed from ``lines``), columns are matched to
    declared fields by name; without one, columns are the declared fields in order. A record with
    more or fewer columns than that, or whose quoted field is never closed, is a malformed record.
    """
    columns = header if header is not None else [f.name for f in schema.fields]
    if header is not None:
        missing = [f.name for f in schema.fields if f.name not in header]
        unknown = [c for c in header if schema.field(c) is None]
        if missing or unknown:
            log.warning("CSV header %s: declared fields missing: %s; undeclared columns ignored: %s",
                        header, ", ".join(missing) or "none", ", ".join(unknown) or "none")
    positional = ", ".join([f"_c{i} STRING" for i in range(len(columns))] + [f"{_CORRUPT} STRING"])
    parsed = F.from_csv(F.col(LINE), positional, {
        **_PERMISSIVE, "sep": options.delimiter, "quote": options.quote, "escape": options.escape})
    where = "of the header" if header is not None else "the schema declares"
    malformed = F.when(parsed[_CORRUPT].isNotNull(),
                       F.lit(f"row does not have the {len(columns)} columns {where}"))
    if _UNCLOSED in lines.columns:
        malformed = F.when(F.col(_UNCLOSED), F.lit(
            "a quoted field opened in this record is not closed before the end of the file")).otherwise(malformed)

    def value(name: str) -> Column:
        return parsed[f"_c{columns.index(name)}"] if name in columns else F.lit(None).cast("string")

    return lines.select(
        SOURCE_FILE, ROW_NUMBER, F.col(LINE).alias(RAW), malformed.alias(MALFORMED),
        F.struct(*[value(f.name).alias(f.name) for f in schema.fields]).alias(STRINGS),
    )


def transform_parquet(df: DataFrame, schema: SchemaSpec) -> DataFrame:
    """Parquet rows (file columns + ``_source_file``, ``_row_number``) to the parsed layout.

    Values are turned into strings (nested ones into JSON) and checked like text formats, so a
    file whose writer chose other types (int for long, string for a date) is judged the same way.
    The raw record is the row as JSON.
    """
    data = [c for c in df.columns if c not in (SOURCE_FILE, ROW_NUMBER)]
    types = {f.name: f.dataType for f in df.schema.fields}

    def as_string(name: str) -> Column:
        if name not in types:
            return F.lit(None).cast("string")
        col = F.col(f"`{name}`")
        if isinstance(types[name], T.StructType | T.ArrayType | T.MapType):
            return F.to_json(col)
        return col.cast("string")

    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in data])) if data else F.lit("{}")
    return df.select(
        SOURCE_FILE, F.col(ROW_NUMBER).cast("long").alias(ROW_NUMBER), raw.alias(RAW),
        F.lit(None).cast("string").alias(MALFORMED),
        F.struct(*[as_string(f.name).alias(f.name) for f in schema.fields]).alias(STRINGS),
    )


def _shown(value: Column) -> Column:
    """A value as quoted in a message: long values are cut so that messages stay readable."""
    return F.when(F.length(value) > _SHOWN_CHARS, F.concat(F.substring(value, 1, _SHOWN_CHARS - 3), F.lit("...")))\
        .otherwise(value)


def _type_description(spec: FieldSpec) -> str:
    if spec.type == "decimal":
        return f"decimal({spec.precision},{spec.scale})"
    return {
        "integer": "integer", "long": "long integer", "double": "number", "boolean": "boolean",
        "date": "date (YYYY-MM-DD)", "timestamp": "timestamp (ISO 8601, e.g. 2024-01-31T09:30:00Z)",
        "object": "JSON object of the declared shape", "array": "JSON array of the declared shape",
        "map": "JSON object (map) of the declared shape",
    }.get(spec.type, spec.type)


def _typed(spec: FieldSpec, value: Column) -> Column:
    """The value cast to the field's declared type; null when it does not cast."""
    target = spark_type(spec)
    if spec.type == "string":
        return value
    if spec.type == "date":
        return F.when(value.rlike(DATE_PATTERN), value.try_cast(target))
    if spec.type == "timestamp":
        return F.when(value.rlike(TIMESTAMP_PATTERN), value.try_cast(target))
    if spec.type in ("object", "array", "map"):
        # Wrapping the value as {"v": ...} lets the corrupt-record column flag any mismatch,
        # including a wrong type deep inside the value (from_json alone would null it silently).
        wrapper = T.StructType([T.StructField("v", target, True), T.StructField(_CORRUPT, T.StringType(), True)])
        parsed = F.from_json(F.concat(F.lit('{"v":'), value, F.lit("}")), wrapper, _PERMISSIVE)
        return F.when(parsed[_CORRUPT].isNull(), parsed["v"])
    return value.try_cast(target)  # ANSI-safe: overflow and junk give null, not an error


def _reason(code: str, field: str | None, message: Column | str) -> Column:
    return F.struct(
        F.lit(code).alias("code"),
        (F.lit(field) if field is not None else F.lit(None).cast("string")).alias("field"),
        (F.lit(message) if isinstance(message, str) else message).alias("message"),
    )


def _present(value: Column) -> Column:
    return value.isNotNull() & ~value.rlike(r"^\s*$")


def _overflow(spec: FieldSpec, value: Column, typed: Column) -> tuple[Column, str] | None:
    """When a present value is a well-formed number that does not fit the field's type, and how to say so."""
    if spec.type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[spec.type]
        return (value.rlike(INTEGER_PATTERN) & typed.isNull(),
                f"value '%s' is out of range for {_type_description(spec)} ({low} to {high})")
    if spec.type == "decimal":
        return (value.rlike(DECIMAL_PATTERN) & typed.isNull(),
                f"value '%s' does not fit decimal({spec.precision},{spec.scale}) "
                f"(at most {spec.precision - spec.scale} digits before the decimal point)")
    return None


def _full_match(value: Column, pattern: str) -> Column:
    return value.rlike(f"^(?:{pattern})$")


def transform_check(parsed: DataFrame, schema: SchemaSpec, guardrails: Guardrails,
                    namespaces: Mapping[str, Namespace] | None = None, run_date: dt.date | None = None,
                    stored_ids: DataFrame | None = None) -> DataFrame:
    """Add the typed values (``_t``) and every reason that applies (``_reasons``, empty when valid).

    A malformed record gets only ``malformed_record``. Duplicate event ids are judged within this
    batch (the first occurrence by (source file, row number) stays valid) and against
    ``stored_ids`` (columns ``_stored_id``, ``_stored_batch_date``: the ids the dataset table holds
    from batches *before* the run date, see cdp.datasets.stored_event_ids). Namespace patterns are
    checked when ``namespaces`` is given, future timestamps when ``run_date`` is.
    """
    strings = F.col(STRINGS)
    primary = schema.primary_identity if schema.class_ == "profile" else None
    blocked = sorted({v.strip().lower() for v in guardrails.blocked_identity_values})
    namespaces = namespaces or {}
    checks: list[Column] = []
    typed_values: list[Column] = []
    for spec in schema.fields:
        value = strings[spec.name]
        present = _present(value)
        typed = F.when(present, _typed(spec, value))
        typed_values.append(typed.alias(spec.name))
        shown = _shown(value)
        if spec.required:
            checks.append(F.when(~present, _reason(MISSING_REQUIRED, spec.name,
                                                   f"required field '{spec.name}' is missing")))
        elif primary is not None and spec.name == primary.name:
            # Profiles are upserted on their primary identity: a record without one cannot be stored.
            checks.append(F.when(~present, _reason(
                MISSING_REQUIRED, spec.name,
                f"field '{spec.name}' is missing; it is the primary identity every profile record needs")))
        overflow = _overflow(spec, value, typed)
        wrong = present & typed.isNull()
        if overflow is not None:
            checks.append(F.when(present & overflow[0], _reason(
                NUMBER_OVERFLOW, spec.name, F.format_string(overflow[1], shown))))
            wrong = wrong & ~overflow[0]
        checks.append(F.when(wrong, _reason(
            WRONG_TYPE, spec.name, F.format_string(f"value '%s' is not a valid {_type_description(spec)}", shown))))
        if spec.enum:
            compared = value if spec.type == "string" else typed.cast("string")
            checks.append(F.when(typed.isNotNull() & ~compared.isin(spec.enum), _reason(
                NOT_IN_ENUM, spec.name, F.format_string(f"value '%s' is not one of {', '.join(spec.enum)}", shown))))
        if spec.format is not None:
            trimmed = F.trim(value)
            ok = trimmed.rlike({"email": EMAIL_PATTERN, "phone": PHONE_PATTERN, "uri": URI_PATTERN}[spec.format])
            if spec.format == "phone":
                digits = F.length(F.regexp_replace(trimmed, "[^0-9]", ""))
                ok = ok & digits.between(*PHONE_DIGITS)
            checks.append(F.when(present & ~ok, _reason(
                BAD_FORMAT, spec.name, F.format_string(f"value '%s' is not a valid {_FORMAT_HINTS[spec.format]}",
                                                       shown))))
        if run_date is not None and spec.name == schema.timestamp_field:
            skew = guardrails.max_future_skew_minutes
            limit = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC) + dt.timedelta(
                minutes=skew)
            checks.append(F.when(typed.cast("timestamp") > F.lit(limit), _reason(
                FUTURE_TIMESTAMP, spec.name, F.format_string(
                    f"timestamp '%s' is in the future: later than {limit:%Y-%m-%dT%H:%M:%SZ}, the end of the run "
                    f"day {run_date.isoformat()} plus {skew} minutes (guardrails.max_future_skew_minutes)",
                    shown))))
        if spec.identity is not None:
            namespace = namespaces.get(spec.identity.namespace)
            if namespace is not None and namespace.pattern is not None:
                normalized = normalize(namespace.type, value, namespace.default_region)
                checks.append(F.when(normalized.isNotNull() & ~_full_match(normalized, namespace.pattern), _reason(
                    BAD_IDENTITY_FORMAT, spec.name, F.format_string(
                        f"identity value '%s' does not match the pattern of namespace {namespace.code} "
                        f"({namespace.pattern.replace('%', '%%')})", shown))))
            by_value = F.lower(F.trim(value)).isin(blocked)
            checks.append(F.when(present & by_value, _reason(
                BLOCKED_IDENTITY, spec.name,
                F.format_string("identity value '%s' is blocked (guardrails.blocked_identity_values)", shown))))
            if guardrails.blocked_patterns:
                # The first pattern that matches is the one named in the message.
                matched: Column = F.lit(None).cast("string")
                for pattern in reversed(guardrails.blocked_patterns):
                    matched = F.when(_full_match(F.trim(value), pattern), F.lit(pattern)).otherwise(matched)
                checks.append(F.when(present & ~by_value & matched.isNotNull(), _reason(
                    BLOCKED_IDENTITY, spec.name, F.format_string(
                        "identity value '%s' is blocked (guardrails.blocked_patterns: %s)", shown, matched))))
            limit_chars = guardrails.max_identity_length
            checks.append(F.when(present & (F.length(value) > limit_chars), _reason(
                IDENTITY_TOO_LONG, spec.name,
                F.format_string(f"identity value is %d characters long; at most {limit_chars} are allowed",
                                F.length(value)))))
    if schema.identity_fields:
        names = [f.name for f in schema.identity_fields]
        count = reduce(lambda a, b: a + b, [_present(strings[n]).cast("int") for n in names])
        checks.append(F.when(count == 0, _reason(NO_IDENTITY, None,
                                                 f"record has no identity: none of {', '.join(names)} has a value")))
        most = guardrails.max_identities_per_record
        if len(names) > most:  # otherwise no record of this schema can have too many
            checks.append(F.when(count > most, _reason(TOO_MANY_IDENTITIES, None, F.format_string(
                f"record has %d identity values; at most {most} are allowed (guardrails.max_identities_per_record)",
                count))))
    size_key = "max_event_bytes" if schema.class_ == "event" else "max_profile_record_bytes"
    max_bytes: int = getattr(guardrails, size_key)
    size = F.octet_length(F.col(RAW))
    checks.append(F.when(size > max_bytes, _reason(RECORD_TOO_LARGE, None, F.format_string(
        f"record is %d bytes; at most {max_bytes} are allowed (guardrails.{size_key})", size))))

    out = parsed
    if schema.class_ == "event" and schema.id_field is not None:
        id_value = strings[schema.id_field]
        key = F.when(F.col(MALFORMED).isNull() & _present(id_value), id_value)
        first = Window.partitionBy(key.alias("_id")).orderBy(SOURCE_FILE, ROW_NUMBER)
        out = out.withColumns({
            "_id_rank": F.row_number().over(first),
            "_id_first_file": F.first(SOURCE_FILE).over(first),
            "_id_first_row": F.first(ROW_NUMBER).over(first),
        })
        in_batch = F.when(key.isNotNull() & (F.col("_id_rank") > 1), _reason(
            DUPLICATE_EVENT_ID, schema.id_field,
            F.format_string("event id '%s' already appears in %s at row %d", _shown(id_value),
                            F.col("_id_first_file"), F.col("_id_first_row"))))
        if stored_ids is None:
            checks.append(in_batch)
        else:
            out = out.join(stored_ids.select(STORED_ID, STORED_BATCH_DATE), key == F.col(STORED_ID), "left")
            # An id already stored is reported once, naming the stored batch (the more useful of the two).
            checks.append(F.when(F.col(STORED_ID).isNotNull(), _reason(
                DUPLICATE_EVENT_ID, schema.id_field,
                F.format_string("event id '%s' is already stored in the dataset from the batch of %s",
                                _shown(id_value), F.col(STORED_BATCH_DATE).cast("string")))).otherwise(in_batch))

    # (coalesce only tells Spark the message is never null in this branch)
    malformed = F.array(_reason(MALFORMED_RECORD, None, F.coalesce(F.col(MALFORMED), F.lit("malformed record"))))
    reasons = F.when(F.col(MALFORMED).isNotNull(), malformed).otherwise(F.array_compact(F.array(*checks)))
    return out.select(*parsed.columns, F.struct(*typed_values).alias(TYPED), reasons.alias(REASONS))


def transform_valid(checked: DataFrame, schema: SchemaSpec, run_date: dt.date) -> DataFrame:
    """The valid records typed as ``dataset_struct(schema)`` with their metadata columns."""
    midnight = dt.datetime.combine(run_date, dt.time(0), tzinfo=dt.UTC)
    record_ts: Column = F.lit(midnight)
    if schema.timestamp_field is not None:
        # Records without their own time sort as the start of the batch day.
        record_ts = F.coalesce(F.col(TYPED)[schema.timestamp_field].cast("timestamp"), F.lit(midnight))
    valid = checked.where(F.size(REASONS) == 0).select(
        *[F.col(TYPED)[f.name].alias(f.name) for f in schema.fields],
        F.col(SOURCE_FILE), F.col(ROW_NUMBER), F.lit(run_date).alias(BATCH_DATE), record_ts.alias(RECORD_TS),
    )
    return valid.to(dataset_struct(schema))


def transform_quarantine(checked: DataFrame, dataset: str, run_date: dt.date) -> DataFrame:
    """The rejected records as quarantine rows (QUARANTINE.schema)."""
    rejected = checked.where(F.size(REASONS) > 0).select(
        F.lit(dataset).alias("dataset"), F.lit(run_date).alias("batch_date"),
        F.col(SOURCE_FILE).alias("source_file"), F.col(ROW_NUMBER).alias("row_number"),
        F.col(RAW).alias("raw"), F.col(REASONS).alias("reasons"),
    )
    assert QUARANTINE.schema is not None
    return rejected.to(QUARANTINE.schema)


def unreadable_rows(unreadable: Sequence[UnreadableFile], dataset: str,
                    run_date: dt.date) -> list[tuple[object, ...]]:
    """One quarantine row per unreadable or duplicate file: no row number, no raw text."""
    return [(dataset, run_date, u.path, None, None, [(u.code, None, u.message)]) for u in unreadable]


@dataclass(frozen=True)
class FileCounts:
    """Records read and quarantined in one landed file."""

    read: int
    quarantined: int


def ledger_rows(files: Sequence[str], counts: dict[str, FileCounts], unreadable: Sequence[UnreadableFile],
                dataset: str, run_date: dt.date, run_id: str, rejected: bool,
                hashes: Mapping[str, str] | None = None) -> list[tuple[object, ...]]:
    """Batch-ledger rows, one per landed file in listing order (BATCH_LEDGER.schema), with its content hash."""
    broken = {u.path: u.code for u in unreadable}
    hashes = hashes or {}
    rows: list[tuple[object, ...]] = []
    for path in files:
        if path in broken:
            # The whole file is one quarantined "record": read = valid + quarantined still holds.
            status = STATUS_DUPLICATE if broken[path] == DUPLICATE_FILE else STATUS_UNREADABLE
            rows.append((dataset, run_date, path, 1, 0, 1, status, run_id, hashes.get(path)))
            continue
        c = counts.get(path, FileCounts(0, 0))
        rows.append((dataset, run_date, path, c.read, c.read - c.quarantined, c.quarantined,
                     STATUS_REJECTED if rejected else STATUS_OK, run_id, hashes.get(path)))
    return rows


def rejection_message(dataset: str, read: int, quarantined: int, allowed: float,
                      top_reasons: Sequence[tuple[str, int]]) -> str:
    """What a data engineer reads when a batch is rejected."""
    reasons = ", ".join(f"{code} {n}" for code, n in top_reasons)
    return (f"dataset {dataset}: {quarantined} of {read} records rejected "
            f"({quarantined / read:.1%} > {allowed:.1%} allowed); top reasons: {reasons}")


# ---------------------------------------------------------------- run


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, dataset: str) -> dict[str, int]:
    """Validate a dataset's landed files for ``ctx.run_date``; write staging, quarantine and ledger slices.

    Raises SchemaEvolutionError (before writing anything) when the declared schema breaks the
    dataset's stored table, and BatchRejectedError (after writing everything and recording the
    metrics) when the quarantined share exceeds ``guardrails.max_rejected_share``. Files of an S3
    source are downloaded to a temporary folder for the run and removed afterwards.
    """
    if dataset not in ws.datasets:
        raise CdpError(f"dataset '{dataset}' is not defined in workspace {ws.config.name} "
                       f"(datasets: {', '.join(sorted(ws.datasets))})")
    spec = ws.datasets[dataset]
    schema = ws.schema_of(dataset)
    # Refused before anything is written: a breaking change would fail (or corrupt) the MERGE later.
    check_against_table(schema, ctx.lake.path(DATASET, dataset), dataset,
                        ws.files.get(f"schemas/{schema.name}", f"schemas/{schema.name}.yaml"))
    files = list_landed_files(ctx.settings, spec, ctx.run_date)
    # S3 objects are read from local copies; every Spark action on them happens before the cleanup below.
    cache = Path(tempfile.mkdtemp(prefix=f"cdp-landing-{dataset}-"))
    try:
        return _validate(spark, ws, ctx, dataset, files, download_landed_files(spec, files, cache))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _validate(spark: SparkSession, ws: Workspace, ctx: RunContext, dataset: str, files: Sequence[str],
              local: Mapping[str, str]) -> dict[str, int]:
    spec = ws.datasets[dataset]
    schema = ws.schema_of(dataset)
    guardrails = ws.config.guardrails
    run_date = ctx.run_date
    lake = ctx.lake
    # A file whose content another run date (or an earlier file of this run) brought in is not read again.
    hashes = {path: file_sha256(local[path]) for path in files if os.path.getsize(local[path]) > 0}
    duplicates = find_duplicate_files(files, hashes, ingested_hashes(spark, lake, dataset, run_date,
                                                                     list(hashes.values())), run_date)
    skipped = {d.path for d in duplicates}
    parsed, unreadable = read_records(spark, spec, schema, [f for f in files if f not in skipped], local)
    unreadable = [*unreadable, *duplicates]
    # Counting, staging and quarantine all read the checked records: compute them once.
    stored = stored_event_ids(spark, lake, schema, dataset, before=run_date)
    checked = transform_check(parsed, schema, guardrails, ws.namespaces, run_date, stored).persist()
    try:
        counts = {
            row["file"]: FileCounts(row["read"], row["quarantined"])
            for row in checked.groupBy(F.col(SOURCE_FILE).alias("file")).agg(
                F.count(F.lit(1)).alias("read"),
                F.sum(F.when(F.size(REASONS) > 0, 1).otherwise(0)).alias("quarantined"),
            ).collect()
        }
        read = sum(c.read for c in counts.values()) + len(unreadable)
        quarantined = sum(c.quarantined for c in counts.values()) + len(unreadable)
        allowed = guardrails.max_rejected_share
        # A re-delivered file says nothing about the quality of this batch: it does not count towards rejection.
        judged_read, judged_quarantined = read - len(duplicates), quarantined - len(duplicates)
        rejected = judged_read > 0 and judged_quarantined / judged_read > allowed

        quarantine = transform_quarantine(checked, dataset, run_date)
        if unreadable:
            quarantine = quarantine.unionByName(
                spark.createDataFrame(unreadable_rows(unreadable, dataset, run_date), QUARANTINE.schema))
        slice_predicate = f"dataset = '{dataset}' AND batch_date = {date_literal(run_date)}"
        replace_slice(quarantine, lake.path(QUARANTINE), slice_predicate, QUARANTINE.partition_by)

        ledger = ledger_rows(files, counts, unreadable, dataset, run_date, ctx.run_id, rejected, hashes)
        # add_new_columns: a ledger written before the sha256 column existed gains it.
        replace_slice(spark.createDataFrame(ledger, BATCH_LEDGER.schema), lake.path(BATCH_LEDGER),
                      slice_predicate, BATCH_LEDGER.partition_by, add_new_columns=True)

        # A rejected batch leaves an empty staging slice, so ingest cannot load it (nor an older attempt).
        staged = (spark.createDataFrame([], dataset_struct(schema)) if rejected
                  else transform_valid(checked, schema, run_date))
        replace_slice(staged, lake.path(STAGING, dataset), f"{BATCH_DATE} = {date_literal(run_date)}",
                      STAGING.partition_by, add_new_columns=True)

        metrics = {"rows_read": read, "rows_valid": read - quarantined, "rows_quarantined": quarantined,
                   "files": len(files)}
        if rejected:
            top = (quarantine.select(F.explode("reasons.code").alias("code")).where(F.col("code") != DUPLICATE_FILE)
                   .groupBy("code").count().orderBy(F.desc("count"), "code").limit(3).collect())
            message = rejection_message(dataset, judged_read, judged_quarantined, allowed,
                                        [(r["code"], r["count"]) for r in top])
            # main() records metrics only after run() returns: record them here, the run stops below.
            record_metrics(spark, lake, run_date, STEP, dataset, metrics)
            raise BatchRejectedError(message)
    finally:
        checked.unpersist()
    log.info("dataset %s, %s: %d files, %d records, %d valid, %d quarantined", dataset, run_date, len(files),
             read, read - quarantined, quarantined)
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: validate one dataset for one run date."""
    parser = job_parser("Validate one dataset's landed files: staging, quarantine and batch ledger.")
    parser.add_argument("--dataset", required=True, help="dataset name as declared in the workspace")
    args, ctx, ws = parse_job_args(parser, argv)
    spark = get_session(f"cdp-{STEP}-{args.dataset}")
    metrics = run(spark, ws, ctx, args.dataset)
    record_metrics(spark, ctx.lake, ctx.run_date, STEP, args.dataset, metrics)


if __name__ == "__main__":
    main()
