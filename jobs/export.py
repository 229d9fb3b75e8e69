"""Step export: one CSV file per audience of a local destination, with the members of the run date.

Only what this step implements runs: a ``local`` destination, format csv without compression, one
file per audience, full export. A destination using anything else (another type, hashing, mandatory
fields, deduplication, ...) is refused with an ExportError naming the options, rather than exported
without them (a hash silently skipped would send raw e-mails).

A file holds the audience's realized and existing members joined to their profile of the run
date, in the destination's mapping order (then, optionally, membership_status and
last_qualification_time), sorted by profile id so that a re-run writes the same bytes. Spark
writes it into a temporary folder beside the target; the single part file is then moved over the
target in one rename, so a reader never sees half a file. Every file written is logged in
EXPORT_LOG.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.audiences import AUDIENCE_ID, PROFILE_ID
from cdp.delta_io import read_table, replace_slice
from cdp.errors import CdpError
from cdp.job import StepKey, run_job
from cdp.lake import AUDIENCE_MEMBERSHIP, EXPORT_LOG, PROFILES, date_literal
from cdp.run_context import RunContext, job_parser
from cdp.workspace.file_names import MAX_FILE_NAME_BYTES, render_file_name, slugify
from cdp.workspace.models import AudienceSpec, DestinationSpec
from cdp.workspace.workspace import Workspace

log = logging.getLogger(__name__)

STEP = "export"
MEMBER_STATUSES = ("realized", "existing")
STATUS_HEADERS = ("membership_status", "last_qualification_time")
MAX_FILE_NAME = MAX_FILE_NAME_BYTES
IDENTITY_SEPARATOR = "|"
__all__ = ["ExportError", "file_name", "run", "slugify", "transform_export"]

# Internal column names: the headers are only applied at the very end (positionally), so a
# header may be any text without clashing with these or being parsed as a column path.
_AUDIENCE = "__audience_id"
_PROFILE = "__profile_id"


class ExportError(CdpError):
    """A destination cannot be exported as configured (unknown name, file name too long, ...)."""


def headers_of(dest: DestinationSpec) -> list[str]:
    """The file's header line: the mapping's headers, then the membership columns when included."""
    headers = [m.header for m in dest.mapping] + (list(STATUS_HEADERS) if dest.include_membership_status else [])
    duplicates = sorted({h for h in headers if headers.count(h) > 1})
    if duplicates:
        raise ExportError(f"destination '{dest.name}': column(s) {', '.join(duplicates)} appear twice")
    return headers


def file_name(dest: DestinationSpec, audience: AudienceSpec, run_date: dt.date) -> str:
    """The export file's name from the destination's template (date-time macros: the run date, 00:00 UTC),
    with its extension."""
    name = render_file_name(dest, audience.id, audience.name, dt.datetime.combine(run_date, dt.time(0), dt.UTC))
    if "/" in name or name in (".", ".."):
        raise ExportError(f"destination '{dest.name}': file name '{name}' is not a plain file name")
    if len(name.encode("utf-8")) > MAX_FILE_NAME:
        raise ExportError(f"destination '{dest.name}': file name for audience '{audience.id}' is "
                          f"{len(name.encode('utf-8'))} bytes, more than {MAX_FILE_NAME}: shorten file_name "
                          f"({dest.file_name!r})")
    return name


def unsupported_options(dest: DestinationSpec) -> list[str]:
    """The options of ``dest`` this step does not implement yet (empty: it can be exported)."""
    found = [f"type {dest.type}"] if dest.type != "local" else []
    found += [f"format {dest.format}"] if dest.format != "csv" else []
    found += [f"compression {dest.effective_compression}"] if dest.effective_compression != "none" else []
    found += [f"layout {dest.layout}"] if dest.layout != "per_audience" else []
    found += [f"export {dest.export}"] if dest.export != "full" else []
    found += ["deduplication"] if dest.deduplication is not None else []
    found += ["manifest"] if dest.manifest else []
    found += [f"encryption {dest.encryption}"] if dest.encryption is not None else []
    found += [f"mapping.{i}.hash" for i, m in enumerate(dest.mapping) if m.hash is not None]
    found += [f"mapping.{i}.required" for i, m in enumerate(dest.mapping) if m.required]
    return found


def _mapped_column(source: str, namespace: str | None, dtype: T.DataType | None) -> Column:
    if namespace is not None:
        values = F.array_join(F.array_sort(F.col("identities").getItem(namespace)), IDENTITY_SEPARATOR)
        return F.when(values != "", values)  # no identity in the namespace: null, not an empty string
    if isinstance(dtype, T.StructType | T.ArrayType | T.MapType):
        return F.to_json(F.col(source))  # CSV has no nested values
    return F.col(source)


def transform_export(members: DataFrame, profiles: DataFrame, dest: DestinationSpec) -> DataFrame:
    """The rows of every audience of ``dest``: internal audience and profile ids, then one column per header.

    ``members`` is the membership snapshot of the run date, ``profiles`` the profile snapshot. Only
    realized and existing members of the destination's audiences are kept. The header columns are
    named ``__c0``, ``__c1``, ... in header order (see :func:`audience_rows`).
    """
    headers = headers_of(dest)
    missing = [m.source for m in dest.mapping
               if m.namespace is None and m.source.split(".")[0] not in profiles.columns]
    if missing:
        raise ExportError(f"destination '{dest.name}': attribute(s) {', '.join(missing)} are not profile columns")
    types = {f.name: f.dataType for f in profiles.schema.fields}
    columns = [_mapped_column(m.source, m.namespace, types.get(m.source)) for m in dest.mapping]
    if dest.include_membership_status:
        columns += [F.col("__status"), F.col("__qualified")]
    # Membership columns renamed before the join so that no profile attribute can clash with them.
    kept = members.where(F.col("status").isin(*MEMBER_STATUSES) & F.col(AUDIENCE_ID).isin(*dest.audiences)).select(
        F.col(AUDIENCE_ID).alias(_AUDIENCE), F.col(PROFILE_ID).alias(_PROFILE), F.col("status").alias("__status"),
        F.col("last_qualification_time").alias("__qualified"))
    joined = kept.join(profiles, F.col(_PROFILE) == profiles[PROFILE_ID], "inner")
    assert len(columns) == len(headers)
    return joined.select(_AUDIENCE, _PROFILE, *[c.alias(f"__c{i}") for i, c in enumerate(columns)])


def audience_rows(frame: DataFrame, audience_id: str, headers: Sequence[str]) -> DataFrame:
    """One audience's file content: one partition sorted by profile id, columns renamed to the headers."""
    internal = [f"__c{i}" for i in range(len(headers))]
    ordered = frame.where(F.col(_AUDIENCE) == audience_id).repartition(1).sortWithinPartitions(_PROFILE)
    return ordered.select(*internal).toDF(*headers)


def publish_local(write: Callable[[str], None], target: str) -> int:
    """Have ``write`` fill a temporary folder, move its single part file over ``target``; return its bytes.

    Every file-system call of the export is here, so that object stores can get their own version.
    The folder is beside the target (same file system, so the final rename is atomic) and hidden
    from whoever picks files up; it is removed whatever happens. Spark writes one part file even
    for an empty frame (the header line).
    """
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    # Short, whatever the target's name: a 255-byte file name must not make its temporary folder too long.
    temp_dir = os.path.join(folder, f".cdp-{uuid.uuid4().hex}.tmp")
    try:
        write(temp_dir)
        parts = sorted(p for p in Path(temp_dir).iterdir() if p.name.startswith("part-") and p.suffix == ".csv")
        if len(parts) != 1:
            raise ExportError(f"expected one part file in {temp_dir}, found {len(parts)}")
        os.replace(parts[0], target)  # readers see the old file or the new one, never a mix
        return os.path.getsize(target)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def write_csv(df: DataFrame, dest: DestinationSpec, target: str) -> int:
    """Write ``df`` (one partition) as the CSV file ``target``, replacing it; return its size in bytes."""
    options = {
        "sep": dest.csv.delimiter,
        "quote": dest.csv.quote,
        "escape": dest.csv.escape,
        "header": str(dest.csv.header).lower(),
        "nullValue": dest.csv.null_value,
        "emptyValue": dest.csv.empty_value,
        "timestampFormat": dest.csv.timestamp_format,
        "dateFormat": dest.csv.date_format,
        "timeZone": "UTC",  # the 'Z' of the format is only true in UTC
        "encoding": "UTF-8",
    }
    return publish_local(lambda folder: df.write.mode("overwrite").options(**options).csv(folder), target)


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, destination: str) -> dict[str, int]:
    """Export every audience of one destination for the run date; log the files; return the counts."""
    if destination not in ws.destinations:
        raise ExportError(f"destination '{destination}' is not defined (defined: {', '.join(sorted(ws.destinations))})")
    dest = ws.destinations[destination]
    unsupported = unsupported_options(dest)
    if unsupported:
        raise ExportError(f"destination '{dest.name}' uses {', '.join(unsupported)}, which this export step does "
                          "not implement yet (it writes local CSV files, one per audience, full export)")
    lake, day = ctx.lake, ctx.run_date
    headers = headers_of(dest)
    audiences = [ws.audiences[a] for a in dest.audiences]
    # cdp validate has kept the path under the exports root (unless workspace.yaml allows otherwise).
    folder = os.path.join(ctx.settings.exports, dest.path.format(date=day.isoformat(), destination=dest.name))
    targets = {a.id: os.path.join(folder, file_name(dest, a, day)) for a in audiences}  # fail before writing

    members = read_table(spark, lake.path(AUDIENCE_MEMBERSHIP)).where(F.col("run_date") == F.lit(day))
    profiles = read_table(spark, lake.path(PROFILES)).where(F.col("run_date") == F.lit(day))
    # Kept for the count and every audience's file: the join runs once per destination.
    frame = transform_export(members, profiles, dest).persist()
    try:
        rows = {r[_AUDIENCE]: int(r["count"]) for r in frame.groupBy(_AUDIENCE).count().collect()}
        too_many = sorted(a for a, n in rows.items() if n > dest.split_rows)
        if too_many:
            raise ExportError(f"destination '{dest.name}': audience(s) {', '.join(too_many)} have more than "
                              f"split_rows ({dest.split_rows}) members; splitting files is not implemented yet")
        log_rows = []
        for audience in audiences:
            size = write_csv(audience_rows(frame, audience.id, headers), dest, targets[audience.id])
            count = rows.get(audience.id, 0)
            log.info("%s: %s -> %s (%d rows, %d bytes)", dest.name, audience.id, targets[audience.id], count, size)
            log_rows.append((dest.name, day, audience.id, os.path.abspath(targets[audience.id]), count, size))
    finally:
        frame.unpersist()

    exported = spark.createDataFrame(log_rows, EXPORT_LOG.schema)
    replace_slice(exported, lake.path(EXPORT_LOG), f"destination = '{dest.name}' AND run_date = {date_literal(day)}",
                  EXPORT_LOG.partition_by)
    metrics = {f"{audience_id}.rows": count for _, _, audience_id, _, count, _ in log_rows}
    metrics.update(files=len(log_rows), bytes=sum(r[5] for r in log_rows))
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m jobs.export --run-date YYYY-MM-DD --destination NAME``."""
    parser = job_parser("Export the audiences of one destination for a run date.")
    parser.add_argument("--destination", required=True, help="name of a destination of the workspace")
    run_job(parser, argv, lambda args: StepKey(STEP, args.destination),
            lambda spark, ws, ctx, args: run(spark, ws, ctx, args.destination),
            requires=lambda _args, _ws: [StepKey("evaluate_audiences")])


if __name__ == "__main__":
    main()
