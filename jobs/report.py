"""The last task of the daily run: log a summary of what the run did."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession

from cdp.job import StepKey, run_job
from cdp.report import collect_report, format_report
from cdp.run_context import RunContext, job_parser
from cdp.workspace.loader import Workspace

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    def report(spark: SparkSession, _ws: Workspace, ctx: RunContext, _args: argparse.Namespace) -> None:
        log.info("\n%s", format_report(collect_report(spark, ctx.lake, ctx.run_date)))

    run_job(job_parser("Summarise a daily run"), argv, lambda _args: StepKey("report"), report, record=False)


if __name__ == "__main__":
    main()
