"""The ``cdp`` command: check a workspace, generate sample data, show a run's report, write the docs.

    cdp validate [WORKSPACE]
    cdp generate --profiles N --days D --seed S --out DIR [--end-date YYYY-MM-DD]
    cdp report --date YYYY-MM-DD
    cdp docs [--check]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from cdp.errors import WorkspaceError
from cdp.settings import REPO_ROOT, Settings


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_validate(args: argparse.Namespace) -> int:
    from cdp.workspace.loader import load_workspace

    try:
        ws = load_workspace(args.workspace)
    except WorkspaceError as exc:
        for problem in exc.problems:
            _out(f"{args.workspace}/{problem}")
        _out(f"{len(exc.problems)} problem(s) found")
        return 1
    _out(f"workspace '{ws.config.name}' is valid: {len(ws.schemas)} schemas, {len(ws.datasets)} datasets, "
         f"{len(ws.namespaces)} namespaces, {len(ws.audiences)} audiences, {len(ws.destinations)} destinations")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from cdp.generator import generate

    summary = generate(Path(args.out), profiles=args.profiles, days=args.days, seed=args.seed,
                       end_date=args.end_date)
    _out(str(summary))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cdp.lake import Lake
    from cdp.report import collect_report, format_report
    from cdp.spark import get_session

    spark = get_session("cdp-report")
    spark.sparkContext.setLogLevel("ERROR")
    _out(format_report(collect_report(spark, Lake(Settings.from_env().lake), args.date)))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from cdp.data_dictionary import render_data_dictionary

    path = REPO_ROOT / "docs" / "data_dictionary.md"
    text = render_data_dictionary()
    if args.check:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            _out(f"{path} is out of date: run `cdp docs`")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    _out(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdp", description="Customer data activation platform")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a workspace and list every problem with its file and key")
    p.add_argument("workspace", nargs="?", default=Settings.from_env().workspace)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("generate", help="write deterministic sample landed files for the example workspace")
    p.add_argument("--profiles", type=int, required=True)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=Settings.from_env().landing)
    p.add_argument("--end-date", type=dt.date.fromisoformat,
                   default=dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1),
                   help="last day to generate (default: yesterday, UTC)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("report", help="summarise a run from the lake")
    p.add_argument("--date", type=dt.date.fromisoformat, required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("docs", help="write docs/data_dictionary.md from the table declarations")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    p.set_defaults(func=cmd_docs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


def console() -> None:
    """Entry point of the installed ``cdp`` script."""
    raise SystemExit(main())


if __name__ == "__main__":
    console()
