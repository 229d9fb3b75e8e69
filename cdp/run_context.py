"""What one job run works on: the run date (the partition key), the lake and the workspace.

The run date is the DAG run's data interval start (the day whose files are processed). Every
write is keyed on it, so running a task twice, or backfilling a past date, replaces exactly the
slice that date owns.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cdp.lake import Lake
from cdp.settings import Settings
from cdp.workspace.loader import Workspace, load_workspace


@dataclass(frozen=True)
class RunContext:
    run_date: dt.date
    run_id: str
    settings: Settings

    @property
    def lake(self) -> Lake:
        return Lake(self.settings.lake)

    @property
    def evaluation_time(self) -> dt.datetime:
        """The end of the run's day (UTC): the time audience qualification is stamped with."""
        return dt.datetime.combine(self.run_date + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def job_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every Spark job takes; a job adds its own (e.g. --dataset)."""
    defaults = Settings.from_env()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run-date", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--run-id", default="manual")
    parser.add_argument("--workspace", default=defaults.workspace)
    parser.add_argument("--lake", default=defaults.lake)
    parser.add_argument("--landing", default=defaults.landing)
    parser.add_argument("--exports", default=defaults.exports)
    return parser


def parse_job_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[
        argparse.Namespace, RunContext, Workspace]:
    """Parse a job's arguments; load the workspace (at run time, never at DAG parse time)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # CDP_LOG_LEVEL (default INFO) sets the platform's own loggers (cdp.*, jobs.*, the job module): DEBUG for a
    # closer look, and no level may log a profile value (tests/e2e checks it at DEBUG). Libraries stay at INFO
    # (py4j's DEBUG logs every command it sends to the JVM).
    level = getattr(logging, os.environ.get("CDP_LOG_LEVEL", "INFO").upper(), logging.INFO)
    for name in ("cdp", "jobs", "__main__"):
        logging.getLogger(name).setLevel(level)
    args = parser.parse_args(argv)
    settings = Settings(workspace=args.workspace, lake=args.lake, landing=args.landing, exports=args.exports)
    ctx = RunContext(run_date=args.run_date, run_id=args.run_id, settings=settings)
    # Paths are checked against the roots this job was given, not the environment's.
    return args, ctx, load_workspace(settings.workspace, settings)
