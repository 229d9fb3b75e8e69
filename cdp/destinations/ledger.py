"""The export ledger: what each file destination was sent, file by file, and what is still to deliver.

Protocol of one run: the rendered files are *planned* (name, rows, bytes, SHA-256) before any upload;
each file is marked *delivered* only after the target confirmed it. A re-run after a crash or a timeout
plans the same names (rendering is deterministic) and skips every file already delivered with the same
SHA-256, so nothing is sent twice under another name and nothing is skipped that was not sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cdp import small_tables
from cdp.destinations.render import RenderedFile
from cdp.lake import DESTINATION_METRICS, EXPORT_LEDGER, Lake

PLANNED = "planned"
DELIVERED = "delivered"


@dataclass(frozen=True)
class LedgerEntry:
    file_name: str
    sha256: str
    status: str
    run_id: str | None = None
    kind: str = "data"


def entries(lake: Lake, destination: str, run_date: dt.date) -> dict[str, LedgerEntry]:
    """The ledger rows of one destination and run date, by file name."""
    rows = small_tables.read_rows(lake.path(EXPORT_LEDGER), {"destination": destination, "run_date": run_date})
    return {r["file_name"]: LedgerEntry(r["file_name"], r["sha256"], r["status"], r["run_id"], r["kind"])
            for r in rows}


def base_run_date(lake: Lake, destination: str, before: dt.date) -> dt.date | None:
    """The latest run date before ``before`` whose data files were all delivered (None: there is none)."""
    complete: dict[dt.date, bool] = {}
    for row in small_tables.read_rows(lake.path(EXPORT_LEDGER), {"destination": destination}):
        if row["kind"] == "data" and row["run_date"] < before:
            complete[row["run_date"]] = complete.get(row["run_date"], True) and row["status"] == DELIVERED
    return max((day for day, done in complete.items() if done), default=None)


def plan(lake: Lake, destination: str, run_date: dt.date, run_id: str, mode: str, base: dt.date | None,
         files: Sequence[RenderedFile], locations: dict[str, str]) -> dict[str, LedgerEntry]:
    """Record the run's files as planned (keeping delivered the ones already delivered with the same bytes);
    return the ledger entries as they were before, by name."""
    before = entries(lake, destination, run_date)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for f in files:
        kept = before.get(f.name)
        delivered = kept is not None and kept.status == DELIVERED and kept.sha256 == f.sha256
        rows.append((destination, run_date, f.name, f.kind, f.audience_id, f.rows, f.bytes, f.sha256,
                     locations[f.name], mode, base, DELIVERED if delivered else PLANNED, run_id, now,
                     now if delivered else None))
    small_tables.replace_rows(lake.path(EXPORT_LEDGER), EXPORT_LEDGER, rows,
                              {"destination": destination, "run_date": run_date})
    return before


def mark_delivered(lake: Lake, destination: str, run_date: dt.date, name: str, location: str) -> None:
    """The target confirmed ``name``: mark it delivered."""
    small_tables.update_rows(lake.path(EXPORT_LEDGER),
                             {"destination": destination, "run_date": run_date, "file_name": name},
                             {"status": DELIVERED, "delivered_at": dt.datetime.now(dt.UTC), "location": location})


def delivered_names(lake: Lake, destination: str) -> set[str]:
    """Every file name this destination was ever delivered (what its landing-zone retention may remove)."""
    return {r["file_name"] for r in small_tables.read_rows(lake.path(EXPORT_LEDGER), {"destination": destination})
            if r["status"] == DELIVERED}


def record_destination_metrics(lake: Lake, row: tuple[object, ...], destination: str, run_date: dt.date) -> None:
    """Replace the destination's metrics row of the run date (DESTINATION_METRICS columns; trailing columns
    added later, such as the streaming latencies, may be left out and are written null)."""
    assert DESTINATION_METRICS.schema is not None
    padded = tuple(row) + (None,) * (len(DESTINATION_METRICS.schema.fields) - len(row))
    small_tables.replace_rows(lake.path(DESTINATION_METRICS), DESTINATION_METRICS, [padded],
                              {"destination": destination, "run_date": run_date}, add_new_columns=True)
