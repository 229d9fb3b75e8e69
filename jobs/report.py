"""The last task of the daily run: log a summary of what the run did."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cdp.report import collect_report, format_report
from cdp.run_context import job_parser, parse_job_args
from cdp.spark import get_session

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    _, ctx, _ = parse_job_args(job_parser("Summarise a daily run"), argv)
    spark = get_session("cdp-report")
    log.info("\n%s", format_report(collect_report(spark, ctx.lake, ctx.run_date)))


if __name__ == "__main__":
    main()
