"""Step export: deliver one file destination's audiences for the run date, exactly once.

1. Rows (:mod:`cdp.destinations.rows`): the members of the mapped audiences joined to the run date's
   profiles and mapped; for ``export: incremental``, only what changed since the last run date whose
   files were all delivered (the first export, or a requested full resync, is full); exclusions
   counted by reason.
2. Files (:mod:`cdp.destinations.render`): one file per audience (or one combined file) in the
   destination's format, split every ``split_rows`` rows, rendered deterministically into the run's
   staging folder of the lake; an optional manifest.
3. Delivery (:mod:`cdp.destinations.ledger`, :mod:`cdp.storage`): every file is planned in the export
   ledger, then put to the target (atomically for readers: see each transport), then marked delivered;
   a file already delivered with the same SHA-256 is not sent again; the manifest goes last. Leftovers
   of a killed attempt are removed first.
4. Metrics: ``destination_metrics`` (received = activated + excluded + failed) and ``run_metrics``.

A dry run (``--dry-run``, the DAG's Param ``dry_run``) does 1 and 2 the same way into the lake's preview folder
and records what it found in ``export_previews`` (:mod:`cdp.destinations.preview`); it opens no transport and
writes no ledger and no ``destination_metrics``, so the real run of the same day delivers exactly what it would
have delivered without the dry run.

A destination that stays down fails its own task after the transport's retries; the next run
delivers what is missing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from cdp import lake_files
from cdp.delta_io import read_run_date_slice
from cdp.destinations import ledger
from cdp.destinations.encryption import PGP_EXTENSION, PgpEncryptor, encrypted_name, public_key_of
from cdp.destinations.preview import PREVIEW_STEP, Preview, PreviewFile, fresh_preview_folder, record_preview
from cdp.destinations.render import RenderedFile, render_file, render_manifest
from cdp.destinations.rows import (
    AUDIENCE,
    QUALIFIED,
    REASON,
    STATUS,
    MappingContext,
    evaluation_stamp,
    exclusion_counts,
    exclusion_counts_of,
    exclusion_metrics,
    qualified_column,
    status_column,
    transform_changes,
    transform_exclusions,
    transform_protect_formulas,
    transform_units,
    value_column,
)
from cdp.errors import CdpError, DestinationError, PolicyViolationError
from cdp.governance.consent import purpose_attributes
from cdp.governance.policies import enforce as enforce_policies
from cdp.ingestion.ledger import file_sha256
from cdp.job import StepKey, run_job
from cdp.lake import AUDIENCE_MEMBERSHIP, PROFILES
from cdp.run_context import RunContext, job_parser
from cdp.storage.base import RetryPolicy, Transport
from cdp.storage.connections import get_connection
from cdp.storage.factory import open_transport
from cdp.storage.local import LocalTransport
from cdp.workspace.file_names import render_file_name
from cdp.workspace.loader import Workspace
from cdp.workspace.models import FileDestination, LocalDestination, StreamingDestination

log = logging.getLogger(__name__)

STEP = "export"
STATUS_HEADERS = ("membership_status", "last_qualification_time")


class ExportError(CdpError):
    """A destination cannot be exported as configured (unknown name, ...)."""


def headers_and_columns(dest: FileDestination) -> tuple[list[str], list[str]]:
    """The file's headers and the internal columns they come from, in order."""
    headers = [m.header for m in dest.mapping]
    columns = [value_column(i) for i in range(len(dest.mapping))]
    if dest.layout == "per_audience":
        if dest.include_membership_status:
            headers += list(STATUS_HEADERS)
            columns += [STATUS, QUALIFIED]
    else:
        for audience_id in dest.audiences:
            headers.append(f"{audience_id}_status")
            columns.append(status_column(audience_id))
            if dest.include_membership_status:
                headers.append(f"{audience_id}_last_qualification_time")
                columns.append(qualified_column(audience_id))
    return headers, columns


def folder_of(dest: FileDestination, run_date: dt.date) -> str:
    """The destination's folder (or key prefix) for the run date: ``{date}`` and ``{destination}`` filled."""
    return dest.path.replace("{date}", run_date.isoformat()).replace("{destination}", dest.name)


def retry_policy() -> RetryPolicy:
    """The transports' retry budget: ``CDP_DESTINATION_ATTEMPTS`` tries (default 5), backoff with jitter up to
    ``CDP_DESTINATION_MAX_WAIT`` seconds (default 30) between them."""
    return RetryPolicy(attempts=int(os.environ.get("CDP_DESTINATION_ATTEMPTS", "5")),
                       initial_wait=min(1.0, float(os.environ.get("CDP_DESTINATION_MAX_WAIT", "30"))),
                       max_wait=float(os.environ.get("CDP_DESTINATION_MAX_WAIT", "30")))


def open_destination(dest: FileDestination, ctx: RunContext) -> Transport:
    """The transport of a destination, its credentials from the Airflow connection it names."""
    return open_transport(dest.type_name, dest.connection, bucket=getattr(dest, "bucket", None),
                          container=getattr(dest, "container", None), path=folder_of(dest, ctx.run_date),
                          root=ctx.settings.exports, sse=getattr(dest, "sse", None),
                          kms_key_id=getattr(dest, "kms_key_id", None), retry=retry_policy())


def select_units(spark: SparkSession, ws: Workspace, ctx: RunContext, dest: FileDestination,
                 full_resync: bool) -> tuple[DataFrame, str, dt.date | None]:
    """The units of this run with their exclusion reason, the export mode, and the base day of an incremental one."""
    mapping = MappingContext(ws.profile_attributes(), ws.namespaces, text_only=dest.format == "csv",
                             consent_attributes=purpose_attributes(ws))

    def units_of(day: dt.date) -> DataFrame:
        members = read_run_date_slice(spark, ctx.lake, AUDIENCE_MEMBERSHIP, day, absent_as_empty=True)
        profiles = read_run_date_slice(spark, ctx.lake, PROFILES, day)
        return transform_units(members, profiles, dest, mapping)

    today = units_of(ctx.run_date)
    base = None if dest.export == "full" or full_resync else ledger.base_run_date(ctx.lake, dest.name,
                                                                                  ctx.run_date)
    if base is None:
        mode = "resync" if full_resync else "full"
        units = today
    else:
        mode = "incremental"
        exits = read_run_date_slice(spark, ctx.lake, AUDIENCE_MEMBERSHIP, ctx.run_date, absent_as_empty=True).where(
            F.col("status") == "exited")
        units = transform_changes(today, units_of(base), exits, dest)
    return transform_exclusions(units, dest, mapping), mode, base


def render(ws: Workspace, ctx: RunContext, dest: FileDestination, exported: DataFrame, folder: str,
           written: Callable[[], int] | None = None, spark_folder: str | None = None) -> list[RenderedFile]:
    """Every data file of the run, in the destination's audience order (``written``, ``spark_folder``: see
    :func:`render_file`)."""
    headers, columns = headers_and_columns(dest)
    if dest.format == "csv" and dest.csv.formula_protection:
        exported = transform_protect_formulas(exported, [value_column(i) for i in range(len(dest.mapping))])
    stamp = evaluation_stamp(ctx.run_date)
    files: list[RenderedFile] = []
    if dest.layout == "per_audience":
        for audience_id in dest.audiences:
            name = render_file_name(dest, audience_id, ws.audiences[audience_id].name, stamp)
            files += render_file(exported.where(F.col(AUDIENCE) == audience_id), columns, headers, dest, name,
                                 folder, audience_id, written, spark_folder)
    else:
        name = render_file_name(dest, "combined", dest.name, stamp)
        files += render_file(exported, columns, headers, dest, name, folder, None, written, spark_folder)
    return files


def observed_counts(observation: Observation, units: DataFrame) -> dict[str, int]:
    """The exclusion counts observed by the write of ``units``; counted again when Spark observed nothing, which
    it does for a plan it found empty before running it (its observation then holds no metrics)."""
    try:
        values = observation.get
    except Exception as exc:  # py4j and Connect raise their own types for "no metrics"
        log.debug("no observed metrics (%s): counting the units", type(exc).__name__)
        values = {}
    if "received" not in values:
        return exclusion_counts(units)
    return exclusion_counts_of(values)


def single_file(dest: FileDestination) -> bool:
    """Whether the run renders its units into one file (before splitting): one audience, or the combined layout."""
    return dest.layout != "per_audience" or len(dest.audiences) == 1


def manifest_run_id(spark: SparkSession, ctx: RunContext, dest: FileDestination, files: Sequence[RenderedFile]) -> str:
    """The run id the manifest names: the one it was first delivered with when the data files did not change, so
    that a re-run sends the same manifest (it is skipped like the files); else this run's."""
    before = ledger.entries(ctx.lake, dest.name, ctx.run_date)
    manifest = next((e for e in before.values() if e.kind == "manifest" and e.status == ledger.DELIVERED), None)
    unchanged = all(f.name in before and before[f.name].sha256 == f.sha256 for f in files)
    return manifest.run_id if manifest is not None and manifest.run_id and unchanged else ctx.run_id


def deliver(spark: SparkSession, ctx: RunContext, dest: FileDestination, files: Sequence[RenderedFile], mode: str,
            base: dt.date | None, encryptor: PgpEncryptor | None = None
            ) -> tuple[list[RenderedFile], list[RenderedFile], str | None]:
    """Plan, upload and mark every file (the manifest last): (delivered now or before, not delivered, the error).

    With an ``encryptor``, each data file is encrypted just before its upload (the manifest is sent as it is).
    """
    transport = open_destination(dest, ctx)
    locations = {f.name: transport.location(f.name) for f in files}
    before = ledger.plan(ctx.lake, dest.name, ctx.run_date, ctx.run_id, mode, base, files, locations)
    done: list[RenderedFile] = []
    try:
        removed = transport.cleanup_temporary()
        if removed:
            log.info("destination %s: removed %d temporary file(s) left by an earlier attempt", dest.name, removed)
        for f in files:
            kept = before.get(f.name)
            if kept is not None and kept.status == ledger.DELIVERED and kept.sha256 == f.sha256:
                log.info("destination %s: %s already delivered (sha256 %s): not sent again", dest.name, f.name,
                         f.sha256[:12])
                done.append(f)
                continue
            if encryptor is not None and f.kind == "data":
                sent = f.local_path + PGP_EXTENSION
                encryptor.encrypt(f.local_path, sent)
                remote = transport.put(sent, f.name, sha256=file_sha256(sent))
                os.remove(sent)
            else:
                remote = transport.put(f.local_path, f.name, sha256=f.sha256)
            ledger.mark_delivered(ctx.lake, dest.name, ctx.run_date, f.name, remote.location)
            done.append(f)
        if isinstance(dest, LocalDestination) and dest.retention_days and isinstance(transport, LocalTransport):
            # Only files this destination delivered are ever removed from its landing zone.
            expired = transport.remove_older_than(dest.retention_days,
                                                  ledger.delivered_names(ctx.lake, dest.name))
            log.info("destination %s: removed %d file(s) older than %d days", dest.name, len(expired),
                     dest.retention_days)
    except DestinationError as exc:
        # The transport retried and gave up: what is not delivered is counted as failed, and the next
        # attempt (or the next run) sends it.
        log.error("destination %s: %s", dest.name, exc)
        return done, [f for f in files if f not in done], str(exc)
    finally:
        transport.close()
    return done, [], None


def run(spark: SparkSession, ws: Workspace, ctx: RunContext, destination: str, full_resync: bool = False,
        dry_run: bool = False) -> dict[str, int]:
    """Export every audience of one destination for the run date; return the counts (see the module doc).

    ``dry_run``: compute and render everything into the preview folder, deliver nothing, change no ledger.
    """
    if destination not in ws.destinations:
        raise ExportError(f"destination '{destination}' is not defined (defined: {', '.join(sorted(ws.destinations))})")
    dest = ws.destinations[destination]
    # Usage policies checked again against the workspace as loaded now, before anything is read or sent.
    try:
        enforce_policies(ws, destination)
    except PolicyViolationError as blocked:
        record_blocked(spark, ctx, dest, str(blocked))
        raise
    if isinstance(dest, StreamingDestination):  # http, kafka, kinesis: cdp.destinations.streaming
        from cdp.destinations.streaming import export as streaming_export

        if dry_run:
            return streaming_export.preview(spark, ws, ctx, dest, full_resync)
        return streaming_export.run(spark, ws, ctx, dest, full_resync)
    # The key is checked before anything is computed: a destination that cannot encrypt sends nothing.
    encryptor = open_encryptor(dest)
    try:
        if dry_run:
            return preview(spark, ws, ctx, dest, full_resync, encryptor)
        return export(spark, ws, ctx, dest, full_resync, encryptor)
    finally:
        if encryptor is not None:
            encryptor.close()


def record_blocked(spark: SparkSession, ctx: RunContext, dest: FileDestination | StreamingDestination,
                   error: str) -> None:
    """Record a destination the run-time policy check blocked: every current member of its audiences is received
    and excluded with reason ``policy``, status ``blocked`` and the violations as the error (field, label and
    policy names only), so that the metrics reconcile and the dashboard shows why nothing was sent."""
    members = read_run_date_slice(spark, ctx.lake, AUDIENCE_MEMBERSHIP, ctx.run_date, absent_as_empty=True).where(
        F.col("audience_id").isin(*dest.audiences) & F.col("status").isin("realized", "existing"))
    received = members.select("profile_id").distinct().count()
    ledger.record_destination_metrics(ctx.lake, (
        dest.name, ctx.run_date, ctx.run_id, dest.type_name, "blocked", None, received, 0, {"policy": received}, 0,
        0, 0, 0, "blocked", error), dest.name, ctx.run_date)
    log.error("destination %s blocked by the usage policies: %d member(s) excluded (policy), nothing sent",
              dest.name, received)


def open_encryptor(dest: FileDestination) -> PgpEncryptor | None:
    """The destination's PGP encryptor (its connection's public key), or None when it sends files as they are."""
    if dest.encryption is None:
        return None
    connection_id = str(dest.connection)
    return PgpEncryptor(public_key_of(get_connection(connection_id), connection_id), connection_id)


def staging_folders(staging: str) -> tuple[str, str | None]:
    """The export's staging: the local folder where finished files wait for the transport, and the folder of
    the lake where Spark writes their parts when that is not the same (None for a local lake).

    With a local lake both are ``staging`` (as before). With the lake on S3 the executors write the parts into
    the lake's bucket (every executor of a cluster reaches it, none shares the driver's disk) and the driver
    fetches the finished files into a scratch folder of this task, ``$CDP_SCRATCH/cdp-export/<destination>/<run
    date>`` (default the system's temporary folder): removed when the export ends, and, when an attempt was
    killed or failed, by the next attempt before it starts (the files hold PII).
    """
    if lake_files.is_local(staging):
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging, exist_ok=True)
        return staging, None
    lake_files.remove_tree(staging)
    destination, run_date = staging.rstrip("/").split("/")[-2:]
    scratch = os.path.join(os.environ.get("CDP_SCRATCH") or tempfile.gettempdir(), "cdp-export", destination,
                           run_date)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch, mode=0o700)
    return scratch, staging


def with_manifest(spark: SparkSession, ctx: RunContext, dest: FileDestination, files: list[RenderedFile], folder: str,
                  encryptor: PgpEncryptor | None) -> list[RenderedFile]:
    """The data files under the names they are delivered with (``.pgp`` when encrypted), then the manifest when
    the destination has one."""
    if encryptor is not None:
        # Delivered as <name>.pgp; what is recorded is the rendered file (see cdp.destinations.encryption).
        files = [dataclasses.replace(f, name=encrypted_name(f.name)) for f in files]
    if dest.manifest:
        name = render_file_name(dest, "manifest", dest.name, evaluation_stamp(ctx.run_date))
        name = name[: len(name) - len(dest.extension)] + ".manifest.json"
        encryption = None if encryptor is None else {"type": "pgp", "recipient": encryptor.fingerprint}
        files = [*files, render_manifest(dest, ctx.run_date.isoformat(), manifest_run_id(spark, ctx, dest, files),
                                         files, name, folder, encryption)]
    return files


def preview(spark: SparkSession, ws: Workspace, ctx: RunContext, dest: FileDestination, full_resync: bool,
            encryptor: PgpEncryptor | None) -> dict[str, int]:
    """A dry run of :func:`export`: the same rows, exclusions and files (same names, rows, bytes and SHA-256; an
    encrypted destination's files kept as rendered, before encryption, as its ledger records them) rendered
    into the preview folder and recorded in ``export_previews``; nothing is delivered or written to a ledger."""
    folder = fresh_preview_folder(ctx.settings.lake, ctx.run_date, dest.name)
    units, mode, base = select_units(spark, ws, ctx, dest, full_resync)
    units = units.persist()
    try:
        counts = exclusion_counts(units)
        files = with_manifest(spark, ctx, dest, render(ws, ctx, dest, units.where(F.col(REASON).isNull()), folder),
                              folder, encryptor)
    finally:
        units.unpersist()
    before = ledger.entries(ctx.lake, dest.name, ctx.run_date)
    listed = [PreviewFile(f.name, f.kind, f.audience_id, f.rows, f.bytes, f.sha256,
                          f.name in before and before[f.name].status == ledger.DELIVERED
                          and before[f.name].sha256 == f.sha256) for f in files]
    data = [f for f in listed if f.kind == "data"]
    excluded = {k.removeprefix("excluded."): v for k, v in counts.items() if k.startswith("excluded.")}
    result = Preview(dest.name, ctx.run_date, ctx.run_id, dest.type_name, mode, base, counts["received"],
                     counts["activated"], excluded, 0, listed, sum(f.rows for f in data), sum(f.bytes for f in data), 0,
                     sum(1 for f in listed if f.already_delivered), folder)
    record_preview(ctx.lake, result)
    log.info("dry run of destination %s (%s, %s): %d received, %d activated, %s excluded, %d file(s), %d rows, "
             "%d bytes (%d already delivered); nothing delivered, preview in %s", dest.name, dest.type_name, mode,
             result.received, result.activated, excluded, len(data), result.rows, result.bytes,
             result.already_delivered, folder)
    return result.metrics()


def export(spark: SparkSession, ws: Workspace, ctx: RunContext, dest: FileDestination, full_resync: bool,
           encryptor: PgpEncryptor | None) -> dict[str, int]:
    """:func:`run` for a destination found in the workspace."""
    folder, spark_folder = staging_folders(
        os.path.join(ctx.settings.lake, "_export_staging", dest.name, ctx.run_date.isoformat()))
    started = time.monotonic()
    units, mode, base = select_units(spark, ws, ctx, dest, full_resync)
    # One file rendered from the units (one audience, or the combined layout): they are computed once, by its
    # write, which counts the exclusions on the way (an observation). Several: cached, counted, then rendered.
    observation = Observation(f"export_{uuid.uuid4().hex}") if single_file(dest) else None
    plain = units
    units = units.observe(observation, *exclusion_metrics()) if observation is not None else units.persist()
    error: str | None = None
    phases: dict[str, float] = {}
    try:
        counts = exclusion_counts(units) if observation is None else {}
        phases["selected"] = time.monotonic() - started

        def written() -> int:
            assert observation is not None
            counts.update(observed_counts(observation, plain))
            return counts["activated"]

        files = render(ws, ctx, dest, units.where(F.col(REASON).isNull()), folder,
                       written if observation is not None else None, spark_folder)
        files = with_manifest(spark, ctx, dest, files, folder, encryptor)
        phases["rendered"] = time.monotonic() - started - sum(phases.values())
        done, missed, cause = deliver(spark, ctx, dest, files, mode, base, encryptor)
        phases["delivered"] = time.monotonic() - started - sum(phases.values())
        if missed:
            error = f"{len(missed)} file(s) not delivered, first {missed[0].name}: {cause}"
    finally:
        if observation is None:
            units.unpersist()
    data_done = [f for f in done if f.kind == "data"]
    failed = sum(f.rows for f in missed if f.kind == "data")
    excluded = {k.removeprefix("excluded."): v for k, v in counts.items() if k.startswith("excluded.")}
    metrics = {"received": counts["received"], "activated": counts["activated"] - failed, "failed": failed,
               "files": len(data_done), "rows": sum(f.rows for f in data_done),
               "bytes": sum(f.bytes for f in data_done), **{f"excluded.{k}": v for k, v in excluded.items()}}
    ledger.record_destination_metrics(ctx.lake, (
        dest.name, ctx.run_date, ctx.run_id, dest.type_name, mode, base, metrics["received"], metrics["activated"],
        excluded, failed, metrics["files"], metrics["rows"], metrics["bytes"], "failed" if missed else "delivered",
        error), dest.name, ctx.run_date)
    if missed:
        if spark_folder is not None:  # a scratch copy: the next attempt renders the files again
            shutil.rmtree(folder, ignore_errors=True)
        raise DestinationError(f"destination {dest.name}: {error} (the next attempt or run delivers what is "
                               "missing; files already delivered are not sent again)")
    shutil.rmtree(folder, ignore_errors=True)
    if spark_folder is not None:
        lake_files.remove_tree(spark_folder)
    phases["recorded"] = time.monotonic() - started - sum(phases.values())
    log.info("destination %s (%s, %s): %d received, %d activated, %s excluded, %d file(s), %d bytes; %s",
             dest.name, dest.type_name, mode, metrics["received"], metrics["activated"], excluded, metrics["files"],
             metrics["bytes"], ", ".join(f"{k} in {v:.1f}s" for k, v in phases.items()))
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m jobs.export --run-date YYYY-MM-DD --destination NAME [--full-resync] [--dry-run]``."""
    parser = job_parser("Export the audiences of one destination for a run date.")
    parser.add_argument("--destination", required=True, help="name of a destination of the workspace")
    parser.add_argument("--full-resync", action="store_true",
                        help="send every current member, whatever was delivered before (recorded as mode resync)")
    parser.add_argument("--dry-run", action="store_true",
                        help="compute and render everything into <lake>/previews/<run date>/<destination>/ and "
                             "record it in export_previews; deliver nothing and change no ledger")
    run_job(parser, argv, lambda args: StepKey(PREVIEW_STEP if args.dry_run else STEP, args.destination),
            lambda spark, ws, ctx, args: run(spark, ws, ctx, args.destination, args.full_resync, args.dry_run),
            requires=lambda _args, _ws: [StepKey("evaluate_audiences")])


if __name__ == "__main__":
    main()
