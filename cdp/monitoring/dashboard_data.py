"""What the Activation dashboard shows, read from the lake's small aggregate tables with ``deltalake`` (no Spark).

Every function reads only aggregates (``audience_sizes``, ``audience_catalog``, ``destination_metrics``,
``batch_ledger``, ``quarantine_summary``, ``identity_summary``, ``quality_results``), with the run-date or
destination filter pushed down to Delta's partition values and file statistics, so a page costs the same with
a year of runs as with a week. Results are cached per table version: a page rendered again before any job
wrote the table is served from memory; a new commit is seen at the next request.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from cdp.lake import (
    AUDIENCE_CATALOG,
    AUDIENCE_SIZES,
    BATCH_LEDGER,
    DESTINATION_METRICS,
    IDENTITY_SUMMARY,
    QUALITY_RESULTS,
    QUARANTINE_SUMMARY,
    Lake,
    TableSpec,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
DAG_ID = "cdp_daily"  # the DAG whose export task wrote destination_metrics (dags/cdp_daily.py)
EXPORT_TASK = "export"
INGESTED_STATUSES = ("ingested", "ok")  # batch_ledger statuses whose valid rows reached the dataset table


@dataclass(frozen=True)
class AudienceRow:
    """One audience on its latest run date, with its size over the last runs (oldest first)."""

    audience_id: str
    name: str
    evaluation: str
    reason: str
    size: int
    realized: int
    exited: int
    history: list[tuple[dt.date, int]]


@dataclass(frozen=True)
class AudiencePage:
    """A page of audiences of the latest run date, largest first."""

    run_date: dt.date | None
    total: int
    page: int
    page_size: int
    rows: list[AudienceRow]


@dataclass(frozen=True)
class DestinationRun:
    """One destination_metrics row, with the Airflow UI path of its export task's log."""

    destination: str
    run_date: dt.date
    run_id: str | None
    type: str
    mode: str
    received: int
    activated: int
    excluded: dict[str, int]
    failed: int
    files: int
    rows: int
    bytes: int
    status: str
    error: str | None
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    log_path: str | None


@dataclass(frozen=True)
class DestinationPage:
    """A page of destination runs, newest first."""

    total: int
    page: int
    page_size: int
    rows: list[DestinationRun]


@dataclass(frozen=True)
class IngestionDay:
    """Rows of one dataset and batch date, summed over its files (batch_ledger)."""

    dataset: str
    batch_date: dt.date
    files: int
    rows_read: int
    rows_ingested: int
    rows_quarantined: int


@dataclass(frozen=True)
class QuarantineReason:
    """A quarantine reason of one dataset and batch date, with masked samples (quarantine_summary)."""

    dataset: str
    batch_date: dt.date
    code: str
    field: str
    records: int
    samples: list[str]


@dataclass(frozen=True)
class IdentityRun:
    """The identity graph of one run date (identity_summary)."""

    run_date: dt.date
    profiles: int
    identities: int
    links: int
    identities_per_profile: dict[int, int]
    links_dropped: int
    identities_dropped: int
    links_expired: int
    profile_merges: int
    profile_splits: int


@dataclass(frozen=True)
class QualityCheck:
    """One Great Expectations expectation result (quality_results)."""

    run_date: dt.date
    stage: str
    suite: str
    expectation: str
    kwargs: str
    success: bool
    observed: str | None


@dataclass
class _Cached:
    table: DeltaTable
    results: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    version: int = -1
    dataset: ds.Dataset | None = None  # the version's pyarrow dataset: one fragment per file, built once


class DashboardData:
    """The dashboard's reads over one lake; safe to share between the requests of one server process."""

    def __init__(self, lake_root: str, storage_options: dict[str, str] | None = None) -> None:
        self.lake = Lake(lake_root)
        self.storage_options = storage_options
        self._tables: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._current: _Cached  # the entry whose compute() runs, under the lock

    # -- the cache ------------------------------------------------------------------------------------------------

    def _cached(self, spec: TableSpec, key: tuple[Any, ...], compute: Callable[[DeltaTable], T], empty: T) -> T:
        """``compute(table)`` for the table's current version, from the cache when that version was seen."""
        path = self.lake.path(spec)
        with self._lock:
            entry = self._tables.get(path)
            if entry is None:
                if not DeltaTable.is_deltatable(path, storage_options=self.storage_options):
                    return empty  # no job has written it yet
                entry = _Cached(DeltaTable(path, storage_options=self.storage_options))
                self._tables[path] = entry
            else:
                entry.table.update_incremental()  # reads only the commits after the version held
            version = entry.table.version()
            if version != entry.version:
                entry.results.clear()
                entry.version = version
                entry.dataset = None
            if key not in entry.results:
                self._current = entry
                entry.results[key] = compute(entry.table)
            result: T = entry.results[key]
            return result

    @staticmethod
    def _partition_values(table: DeltaTable, column: str) -> list[Any]:
        """The distinct values of a partition column, from the log's file list (no data file is read)."""
        actions = pa.table(table.get_add_actions(flatten=True))  # an arro3 table: to pyarrow, no copy
        values = actions.column(f"partition.{column}").to_pylist() if actions.num_rows else []
        return sorted({v for v in values if v is not None})

    def _read(self, table: DeltaTable, columns: Sequence[str], where: ds.Expression | None) -> pa.Table:
        """Rows of the table's current version; ``where`` prunes files by partition values and min/max statistics
        (deltalake puts both in each fragment's expression) before any data file is opened."""
        entry = self._current
        if entry.dataset is None:
            entry.dataset = table.to_pyarrow_dataset()  # seconds for thousands of files: once per version
        return entry.dataset.to_table(columns=list(columns), filter=where)

    @staticmethod
    def _stat_dates(table: DeltaTable, column: str) -> list[dt.date]:
        """The smallest and largest values of a date column in each of the table's files (their statistics in the
        log; no data file is read), sorted: each is a value some row holds, so the largest is the latest date and
        the k-th largest is a lower bound of the k-th latest (a compacted file may hold dates between them)."""
        actions = pa.table(table.get_add_actions(flatten=True))
        names = [f"{stat}.{column}" for stat in ("min", "max") if f"{stat}.{column}" in actions.column_names]
        if not actions.num_rows or not names:
            return []
        return sorted({_as_date(v) for name in names for v in actions.column(name).to_pylist() if v is not None})

    # -- audiences -------------------------------------------------------------------------------------------------

    def audience_run_dates(self, runs: int = 30) -> list[dt.date]:
        """The last ``runs`` run dates of audience_sizes, oldest first."""
        def compute(table: DeltaTable) -> list[dt.date]:
            return [_as_date(v) for v in self._partition_values(table, "run_date")][-runs:]
        return self._cached(AUDIENCE_SIZES, ("dates", runs), compute, [])

    def audiences(self, page: int = 1, page_size: int = 50, search: str = "", evaluation: str = "",
                  history_runs: int = 30) -> AudiencePage:
        """Audiences of the latest run date, largest first (ties by id), ``search`` in their id or name (case
        folded), ``evaluation`` ``batch`` / ``streaming`` or all; each with its sizes over ``history_runs`` runs."""
        dates = self.audience_run_dates(history_runs)
        if not dates:
            return AudiencePage(None, 0, page, page_size, [])
        day = dates[-1]
        day_filter = ds.field("run_date") == pa.scalar(day, pa.date32())
        sizes = self._cached(AUDIENCE_SIZES, ("day", day), lambda t: self._read(
            t, ["audience_id", "size", "realized", "exited"], day_filter), pa.table({}))
        catalog = self._cached(AUDIENCE_CATALOG, ("day", day), lambda t: self._read(
            t, ["audience_id", "name", "evaluation", "reason"], day_filter), pa.table({}))
        names = {r["audience_id"]: r for r in catalog.to_pylist()}
        rows = []
        needle = search.strip().casefold()
        for r in sizes.to_pylist():
            info = names.get(r["audience_id"], {})
            name = info.get("name", r["audience_id"])
            if needle and needle not in r["audience_id"].casefold() and needle not in name.casefold():
                continue
            if evaluation and info.get("evaluation") != evaluation:
                continue
            rows.append((r, info, name))
        rows.sort(key=lambda x: (-x[0]["size"], x[0]["audience_id"]))
        start = (max(page, 1) - 1) * page_size
        shown = rows[start:start + page_size]
        ids = [r["audience_id"] for r, _, _ in shown]
        history: dict[str, list[tuple[dt.date, int]]] = {i: [] for i in ids}
        if ids:
            where = ((ds.field("run_date") >= pa.scalar(dates[0], pa.date32()))
                     & ds.field("audience_id").isin(ids))
            past = self._cached(AUDIENCE_SIZES, ("history", dates[0], tuple(ids)), lambda t: self._read(
                t, ["run_date", "audience_id", "size"], where), pa.table({}))
            for h in sorted(past.to_pylist(), key=lambda h: h["run_date"]):
                history[h["audience_id"]].append((h["run_date"], h["size"]))
        return AudiencePage(day, len(rows), max(page, 1), page_size, [
            AudienceRow(r["audience_id"], name, info.get("evaluation", "?"), info.get("reason", ""), r["size"],
                        r["realized"], r["exited"], history[r["audience_id"]]) for r, info, name in shown])

    # -- destinations ----------------------------------------------------------------------------------------------

    def destination_names(self) -> list[str]:
        """Every destination with recorded runs (partition values of destination_metrics)."""
        return self._cached(DESTINATION_METRICS, ("names",),
                            lambda t: [str(v) for v in self._partition_values(t, "destination")], [])

    def latest_destination_run(self) -> dt.date | None:
        """The latest run date of destination_metrics (from the files' statistics)."""
        return self._cached(DESTINATION_METRICS, ("latest",),
                            lambda t: max(self._stat_dates(t, "run_date"), default=None), None)

    def destination_runs(self, page: int = 1, page_size: int = 50, destination: str = "",
                         since: dt.date | None = None) -> DestinationPage:
        """destination_metrics rows, newest run date first then by destination; ``destination`` (pushed down
        to the partition) and ``since`` (a run date, pushed down to the files' statistics) filter them."""
        where: ds.Expression | None = None
        if destination:
            where = ds.field("destination") == destination
        if since is not None:
            after = ds.field("run_date") >= pa.scalar(since, pa.date32())
            where = after if where is None else where & after

        def compute(table: DeltaTable) -> list[dict[str, Any]]:
            names = {f.name for f in table.schema().fields}
            columns = [c for c in ("destination", "run_date", "run_id", "type", "mode", "received", "activated",
                                   "excluded", "failed", "files", "rows", "bytes", "status", "error",
                                   "latency_p50_ms", "latency_p95_ms") if c in names]
            rows = self._read(table, columns, where).to_pylist()
            rows.sort(key=lambda r: (-r["run_date"].toordinal(), r["destination"]))
            return rows

        rows: list[dict[str, Any]] = self._cached(DESTINATION_METRICS, ("runs", destination, since), compute, [])
        start = (max(page, 1) - 1) * page_size
        return DestinationPage(len(rows), max(page, 1), page_size, [
            DestinationRun(r["destination"], r["run_date"], r.get("run_id"), r["type"], r["mode"], r["received"],
                           r["activated"], dict(r["excluded"] or []), r["failed"], r["files"], r["rows"], r["bytes"],
                           r["status"], r.get("error"), r.get("latency_p50_ms"), r.get("latency_p95_ms"),
                           log_path(r.get("run_id")))
            for r in rows[start:start + page_size]])

    # -- ingestion -------------------------------------------------------------------------------------------------

    def latest_batch_date(self) -> dt.date | None:
        """The latest batch date of batch_ledger (from the files' statistics)."""
        return self._cached(BATCH_LEDGER, ("latest",), lambda t: max(self._stat_dates(t, "batch_date"),
                                                                     default=None), None)

    def ingestion_days(self, since: dt.date | None = None, dataset: str = "") -> list[IngestionDay]:
        """Per dataset and batch date (newest first): files, rows read, ingested (valid rows of files whose status
        is ingested) and quarantined, summed from batch_ledger."""
        where = _since_and(since, "batch_date", "dataset", dataset)

        def compute(table: DeltaTable) -> list[IngestionDay]:
            rows = self._read(table, ["dataset", "batch_date", "rows_read", "rows_valid", "rows_quarantined",
                                      "status"], where)
            ingested = pc.if_else(pc.is_in(rows.column("status"), pa.array(INGESTED_STATUSES)),
                                  rows.column("rows_valid"), pa.scalar(0, pa.int64()))
            rows = rows.append_column("rows_ingested", ingested).append_column(
                "one", pa.array([1] * rows.num_rows, pa.int64()))
            grouped = rows.group_by(["dataset", "batch_date"]).aggregate([
                ("one", "sum"), ("rows_read", "sum"), ("rows_ingested", "sum"), ("rows_quarantined", "sum")])
            out = [IngestionDay(r["dataset"], r["batch_date"], r["one_sum"], r["rows_read_sum"],
                                r["rows_ingested_sum"], r["rows_quarantined_sum"]) for r in grouped.to_pylist()]
            return sorted(out, key=lambda d: (-d.batch_date.toordinal(), d.dataset))

        return self._cached(BATCH_LEDGER, ("days", since, dataset), compute, [])

    def quarantine_reasons(self, since: dt.date | None = None, dataset: str = "",
                           limit: int = 10) -> list[QuarantineReason]:
        """The ``limit`` reasons with the most quarantined records since ``since`` (per dataset, batch date, code
        and field), with their masked samples."""
        where = _since_and(since, "batch_date", "dataset", dataset)

        def compute(table: DeltaTable) -> list[QuarantineReason]:
            rows = self._read(table, ["dataset", "batch_date", "code", "field", "records", "samples"],
                              where).to_pylist()
            rows.sort(key=lambda r: (-r["records"], -r["batch_date"].toordinal(), r["dataset"], r["code"],
                                     r["field"]))
            return [QuarantineReason(r["dataset"], r["batch_date"], r["code"], r["field"], r["records"],
                                     list(r["samples"])) for r in rows[:limit]]

        return self._cached(QUARANTINE_SUMMARY, ("top", since, dataset, limit), compute, [])

    # -- identity graph and quality --------------------------------------------------------------------------------

    def identity_runs(self, runs: int = 30) -> list[IdentityRun]:
        """identity_summary of the last ``runs`` run dates, oldest first."""
        def compute(table: DeltaTable) -> list[IdentityRun]:
            dates = [_as_date(v) for v in self._partition_values(table, "run_date")][-runs:]
            if not dates:
                return []
            rows = self._read(table, [f.name for f in IDENTITY_SUMMARY.schema.fields] if IDENTITY_SUMMARY.schema
                              else [], ds.field("run_date") >= pa.scalar(dates[0], pa.date32())).to_pylist()
            return [IdentityRun(r["run_date"], r["profiles"], r["identities"], r["links"],
                                dict(r["identities_per_profile"]), r["links_dropped"], r["identities_dropped"],
                                r["links_expired"], r["profile_merges"], r["profile_splits"])
                    for r in sorted(rows, key=lambda r: r["run_date"])]
        return self._cached(IDENTITY_SUMMARY, ("runs", runs), compute, [])

    def quality_checks(self, runs: int = 3) -> list[QualityCheck]:
        """Expectation results of the last ``runs`` run dates: newest first, failures first, then by stage,
        suite and expectation."""
        def compute(table: DeltaTable) -> list[QualityCheck]:
            # quality_results is partitioned by stage: the files' statistics bound the run dates to read, the
            # rows read give the last `runs` of them.
            bound = self._stat_dates(table, "run_date")[-runs:]
            if not bound:
                return []
            read = self._read(table, ["run_date", "stage", "suite", "expectation", "kwargs", "success", "observed"],
                              ds.field("run_date") >= pa.scalar(bound[0], pa.date32())).to_pylist()
            dates = set(sorted({r["run_date"] for r in read})[-runs:])
            rows = [r for r in read if r["run_date"] in dates]
            rows.sort(key=lambda r: (-r["run_date"].toordinal(), r["success"], r["stage"], r["suite"],
                                     r["expectation"], r["kwargs"]))
            return [QualityCheck(**r) for r in rows]
        return self._cached(QUALITY_RESULTS, ("runs", runs), compute, [])


def log_path(run_id: str | None) -> str | None:
    """The Airflow 3 UI path of the export task of a run (its mapped instances, one per destination, each with its
    log), or None for a run not made by Airflow."""
    if not run_id:
        return None
    from urllib.parse import quote

    return f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{EXPORT_TASK}/mapped"


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _since_and(since: dt.date | None, date_column: str, key_column: str, key: str) -> ds.Expression | None:
    where: ds.Expression | None = None
    if since is not None:
        where = ds.field(date_column) >= pa.scalar(since, pa.date32())
    if key:
        match = ds.field(key_column) == key
        where = match if where is None else where & match
    return where
