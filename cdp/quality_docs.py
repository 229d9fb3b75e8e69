"""Great Expectations Data Docs of the quality gates: one static site per lake, ``<lake>/quality_docs/``.

Every gate run (``jobs/check_quality.py``) adds the validation results of its suites to the site and rebuilds
its index, so the site holds every gate run of the lake. The folder holds:

- GX's site, as GX lays it out: ``index.html`` (every validation result: status, run time, run name, suite),
  ``validations/<suite>/<run name>/<run time>/<batch>.html`` (one page per suite and gate run: each
  expectation, passed or failed, with its counts and samples), ``expectations/<suite>.html`` (each suite as
  last run) and ``static/`` (GX's styles, fonts and images). The pages load jQuery, Bootstrap and
  bootstrap-table from public CDNs (GX's own choice): a browser that cannot reach them shows the pages
  unstyled and the index table empty.
- ``.store/``: the redacted validation results and suites the site is built from (GX reads every result back
  to build the index). Nothing under a name starting with a dot is served by the Activation view.
- ``.lock``: two gates writing the site at once (``cdp_activate``'s gates run beside ``cdp_daily``'s) take
  turns.

The GX run name is ``<run date>_<stage>`` and its run time the run date at 00:00 UTC (never the clock), so the
pages of a gate run have fixed paths: a re-run of a gate for the same run date first removes that run's results
(a suite it no longer runs included), then writes its own; the index is rebuilt from what is stored and lists
each once. The gate runs of run dates older than ``maintenance.quality_docs_days`` [30] before the run date are
removed at the same time: GX reads every stored result back to build the index (2,000 results: 6 s, an index
page of 2 MB), so the site is kept to what a reader looks at.

No raw sample value is written here: the results are copies redacted by :func:`cdp.quality.redacted_result`
(hashed samples as ``sha256_12:<hex>``; counts kept; everything else GX may keep left out).

Only a lake on this machine's file system gets a site. For a lake on S3 (or any other URL) the gate logs one
INFO line and writes none: the Activation view serves the site from the API server's disk.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from great_expectations.data_context import EphemeralDataContext

log = logging.getLogger(__name__)

DOCS_FOLDER = "quality_docs"  # under the lake root
STORE_FOLDER = ".store"
LOCK_FILE = ".lock"
INDEX_PAGE = "index.html"
SITE_NAME = "quality_docs"


def docs_folder(lake_root: str) -> Path | None:
    """``<lake>/quality_docs`` for a lake on this machine's file system (a path or ``file://``), else None."""
    parsed = urlparse(lake_root)
    if parsed.scheme not in ("", "file"):
        return None
    root = parsed.path if parsed.scheme == "file" else lake_root
    return Path(root) / DOCS_FOLDER


@dataclass(frozen=True)
class DocsTarget:
    """Where the results of one gate run go in the lake's Data Docs, and under which GX run."""

    folder: str
    run_date: dt.date
    stage: str
    # Gate runs of run dates older than run_date minus this many days are removed from the site as it is written
    # (workspace ``maintenance.quality_docs_days``): GX reads every stored result back to build the index.
    keep_days: int = 30

    @property
    def run_name(self) -> str:
        """``<run date>_<stage>``: what tells a gate run's pages apart, and what a re-run of it replaces."""
        return f"{self.run_date.isoformat()}_{self.stage}"

    @property
    def run_time(self) -> dt.datetime:
        """The run date at 00:00 UTC, never the clock: a re-run of the day lands on the same pages."""
        return dt.datetime.combine(self.run_date, dt.time(), dt.UTC)


def docs_target(lake_root: str, run_date: dt.date, stage: str, keep_days: int = 30) -> DocsTarget | None:
    """The Data Docs target of a gate run, or None (logged at INFO) for a lake that is not a local folder."""
    folder = docs_folder(lake_root)
    if folder is None:
        log.info("GX Data Docs not built for stage '%s': the lake %s is not on this machine's file system, and the "
                 "Activation view serves them from a local lake only (the results are in quality_results)",
                 stage, lake_root)
        return None
    return DocsTarget(str(folder), run_date, stage, keep_days)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _remove_empty_folders(root: Path) -> None:
    for path, _, _ in sorted(os.walk(root), key=lambda walked: -len(walked[0])):  # deepest first
        if path != str(root) and not os.listdir(path):
            os.rmdir(path)


def _context(folder: Path) -> EphemeralDataContext:
    """A GX context whose results and suites are stored under ``folder/.store`` and whose one site is ``folder``."""
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()

    def on_disk(store_class: str, name: str) -> dict[str, Any]:
        return {"class_name": store_class, "store_backend": {
            "class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder / STORE_FOLDER / name)}}

    stores = {**defaults.stores,
              defaults.expectations_store_name: on_disk("ExpectationsStore", "expectations"),
              defaults.validation_results_store_name: on_disk("ValidationResultsStore", "validations")}
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,  # GX's tutorial links: nothing a user of this site needs
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "site_section_builders": {"profiling": "False"},  # no profiler runs here
    }
    config = DataContextConfig(store_backend_defaults=defaults, stores=stores, data_docs_sites={SITE_NAME: site},
                               analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False))
    return EphemeralDataContext(project_config=config)


def publish(target: DocsTarget, validations: Sequence[ExpectationSuiteValidationResult]) -> Path:
    """Put a gate run's (already redacted) suite results into the site, replacing the results an earlier run of the
    same gate and run date left, and rebuild the index; return the index page."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # the platform must not call out
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    started = time.monotonic()
    folder = Path(target.folder)
    run_id = RunIdentifier(run_name=target.run_name, run_time=target.run_time)
    with _locked(folder):
        context = _context(folder)
        store = context.validation_results_store
        oldest = target.run_date - dt.timedelta(days=target.keep_days)
        stored = [k for k in store.list_keys() if isinstance(k, ValidationResultIdentifier)]
        stale = [k for k in stored if k.run_id.run_name == target.run_name]
        expired = [k for k in stored if k.run_id.run_time.date() < oldest and k not in stale]
        for key in stale + expired:
            store.remove_key(key)  # the index build then drops their pages too (GX: skip_and_clean_missing)
        # Suites and results: GX's site builder takes both kinds in one list (its signature says one kind).
        written: list[Any] = []
        for validation in validations:
            suite_name = validation.suite_name
            configs = [r.expectation_config for r in validation.results if r.expectation_config is not None]
            # The suite as it ran, without the ids and batch of the gate's own context.
            context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=[
                ExpectationConfiguration(type=c.type, kwargs={k: v for k, v in c.kwargs.items() if k != "batch_id"},
                                         meta=c.meta) for c in configs]))
            # The batch id GX gave the suite's DataFrame (``<data source>-<asset>``, fixed): the page's file name.
            batch_id = next((c.kwargs["batch_id"] for c in configs if c.kwargs.get("batch_id")), suite_name)
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name), run_id=run_id,
                batch_identifier=batch_id)
            store.set(key, validation)
            written += [key, ExpectationSuiteIdentifier(name=suite_name)]
        context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=written)
        for removed in (folder / "validations", folder / STORE_FOLDER / "validations"):
            _remove_empty_folders(removed)  # GX removes a result's file, not the run folders that held it
    log.info("GX Data Docs of stage '%s' (run date %s): %d suite result(s) written to %s, %d replaced, %d of run "
             "dates before %s removed, in %.1f s", target.stage, target.run_date, len(validations), folder, len(stale),
             len(expired), oldest, time.monotonic() - started)
    return folder / INDEX_PAGE


def site_file(folder: Path | None, path: str) -> Path | None:
    """The file of the site ``folder`` that the URL path ``path`` names (``/``-separated, relative; empty: the index
    page), or None when there is none to serve: a segment that is empty or starts with a dot (``..``, ``.store``,
    ``.lock``), a backslash, or a file that resolves outside the folder (through a symlink) or is no regular file.
    """
    if folder is None:
        return None
    parts = path.split("/") if path else [INDEX_PAGE]
    if any(not p or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        return None
    try:
        root = folder.resolve(strict=True)
        file = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        return None
    return file if file.is_relative_to(root) and file.is_file() else None
