"""Dry runs of an export: where the preview of what a destination would receive is kept, and its record.

A dry run selects, excludes and renders exactly as the real export does, then stops before the first
delivery: no transport is opened, no ledger row is written, and ``destination_metrics`` is left alone.
What it found goes to the ``export_previews`` table (counts only: no profile value) and the rendered files
or messages to ``<lake>/previews/<run_date>/<destination>/``, the one place a preview's profile values are
written (they are PII: never logged, never in a metrics table).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cdp import small_tables
from cdp.lake import EXPORT_PREVIEWS, Lake

PREVIEWS_FOLDER = "previews"
# The step name a dry run's export records in step_runs and run_metrics: never "export", so that a dry run
# can neither stand for, nor hide, the real export of the same day.
PREVIEW_STEP = "export_preview"


@dataclass(frozen=True)
class PreviewFile:
    """One file a file destination would receive."""

    file_name: str
    kind: str
    audience_id: str | None
    rows: int
    bytes: int
    sha256: str
    already_delivered: bool


@dataclass(frozen=True)
class Preview:
    """What one destination would receive for a run date (one ``export_previews`` row)."""

    destination: str
    run_date: dt.date
    run_id: str
    type: str
    mode: str
    base_run_date: dt.date | None
    received: int
    activated: int
    excluded: Mapping[str, int]
    failed: int
    files: Sequence[PreviewFile]
    rows: int
    bytes: int
    messages: int
    already_delivered: int
    location: str

    def metrics(self) -> dict[str, int]:
        """The preview's counts as the run_metrics of the ``export_preview`` step."""
        data = [f for f in self.files if f.kind == "data"]
        return {"received": self.received, "activated": self.activated, "failed": self.failed, "files": len(data),
                "rows": self.rows, "bytes": self.bytes, "messages": self.messages,
                "already_delivered": self.already_delivered,
                **{f"excluded.{k}": v for k, v in self.excluded.items()}}


def preview_folder(lake_root: str, run_date: dt.date, destination: str) -> str:
    """``<lake>/previews/<run_date>/<destination>``: where a dry run leaves what the destination would receive."""
    return os.path.join(lake_root, PREVIEWS_FOLDER, run_date.isoformat(), destination)


def fresh_preview_folder(lake_root: str, run_date: dt.date, destination: str) -> str:
    """The preview folder, emptied of an earlier dry run of the same day (a preview is always of one run)."""
    folder = preview_folder(lake_root, run_date, destination)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    return folder


def record_preview(lake: Lake, preview: Preview) -> None:
    """Replace the destination's ``export_previews`` row of the run date."""
    assert EXPORT_PREVIEWS.schema is not None
    data = [f for f in preview.files if f.kind == "data"]
    row = (preview.destination, preview.run_date, preview.run_id, preview.type, preview.mode, preview.base_run_date,
           preview.received, preview.activated, dict(preview.excluded), preview.failed, len(data), preview.rows,
           preview.bytes, preview.messages, preview.already_delivered,
           [(f.file_name, f.kind, f.audience_id, f.rows, f.bytes, f.sha256, f.already_delivered)
            for f in preview.files], preview.location, dt.datetime.now(dt.UTC))
    small_tables.replace_rows(lake.path(EXPORT_PREVIEWS), EXPORT_PREVIEWS, [row],
                              {"destination": preview.destination, "run_date": preview.run_date})
