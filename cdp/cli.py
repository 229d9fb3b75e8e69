"""The ``cdp`` command: check a workspace, generate sample data, show a run's report, write the docs.

    cdp validate [WORKSPACE] [--lake PATH]
    cdp generate --profiles N --days D --seed S --out DIR [--end-date YYYY-MM-DD]
    cdp report --date YYYY-MM-DD
    cdp docs [--check]
    cdp audience preview AUDIENCE_ID --date YYYY-MM-DD [--workspace WORKSPACE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cdp.errors import WorkspaceError
from cdp.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from cdp.workspace.workspace import Workspace

log = logging.getLogger(__name__)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem of the workspace (exit 1), or that it is valid and how each audience evaluates.

    Whatever goes wrong is printed as a problem, never as a traceback: an error this command did not
    foresee names the workspace and asks for a report, and the exit code is still 1.
    """
    try:
        return _validate(args)
    except Exception as exc:
        log.debug("cdp validate failed unexpectedly", exc_info=True)
        _out(f"{args.workspace}: unexpected error while checking the workspace: {type(exc).__name__}: {exc} "
             "(this is a bug of cdp validate: please report it with the workspace that causes it)")
        _out("1 problem(s) found")
        return 1


def _validate(args: argparse.Namespace) -> int:
    from cdp.workspace.loader import load_workspace

    try:
        ws = load_workspace(args.workspace)
    except WorkspaceError as exc:
        for problem in exc.problems:
            # A problem of the folder itself already names it.
            _out(str(problem) if os.path.isabs(problem.file) or problem.file == args.workspace
                 else f"{args.workspace}/{problem}")
        _out(f"{len(exc.problems)} problem(s) found")
        return 1
    breaking = _schema_changes(ws, args.lake)
    if breaking:
        for line in breaking:
            _out(f"{args.workspace}/{line}")
        _out(f"{len(breaking)} problem(s) found")
        return 1
    _out(f"workspace '{ws.config.name}' is valid: {len(ws.schemas)} schemas, {len(ws.datasets)} datasets, "
         f"{len(ws.namespaces)} namespaces, {len(ws.audiences)} audiences, {len(ws.destinations)} destinations")
    from cdp.audiences import classify_all

    for audience_id, eligibility in classify_all(ws.audiences).items():
        _out(eligibility.describe(audience_id))
    return 0


def _schema_changes(ws: Workspace, lake: str) -> list[str]:
    """Breaking changes of each dataset's schema against its table in ``lake`` (read from the Delta log)."""
    from cdp.lake import DATASET, Lake
    from cdp.schema_evolution import breaking_changes, declared_table_struct, read_delta_schema

    lines = []
    for name in sorted(ws.datasets):
        path = Lake(lake).path(DATASET, name)
        schema = ws.schema_of(name)
        try:
            stored = read_delta_schema(path)
        except (OSError, ValueError, KeyError) as exc:
            lines.append(f"{ws.files[f'schemas/{schema.name}']}: cannot compare with the table of dataset {name} "
                         f"({path}): its Delta log cannot be read ({type(exc).__name__}: {exc}); repair the table "
                         "or pass another --lake")
            continue
        if stored is None:
            continue
        for field, message in breaking_changes(declared_table_struct(schema), stored):
            lines.append(f"{ws.files[f'schemas/{schema.name}']}: fields.{field}: {message} "
                         f"(dataset {name}, table {path})")
    return lines


def cmd_generate(args: argparse.Namespace) -> int:
    from cdp.generator import generate

    summary = generate(Path(args.out), profiles=args.profiles, days=args.days, seed=args.seed,
                       end_date=args.end_date)
    _out(str(summary))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cdp.lake import Lake
    from cdp.report import collect_report, format_report
    from cdp.spark import get_session, quiet_spark_logs

    spark = get_session("cdp-report")
    quiet_spark_logs(spark)
    _out(format_report(collect_report(spark, Lake(Settings.from_env().lake), args.date)))
    return 0


def cmd_audience_preview(args: argparse.Namespace) -> int:
    from cdp.errors import CdpError
    from cdp.run_context import RunContext
    from cdp.spark import get_session, quiet_spark_logs
    from cdp.workspace.loader import load_workspace
    from jobs.evaluate_audiences import preview

    settings = Settings.from_env()
    ws = load_workspace(args.workspace or settings.workspace)
    spark = get_session("cdp-audience-preview")
    quiet_spark_logs(spark)
    try:
        size, sample = preview(spark, ws, RunContext(args.date, "preview", settings), args.audience_id)
    except CdpError as exc:
        _out(str(exc))
        return 1
    _out(f"audience {args.audience_id} on {args.date}: {size} profile(s) (nothing written)")
    for profile_id in sample:
        _out(f"  {profile_id}")
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
    p.add_argument("--lake", default=Settings.from_env().lake,
                   help="lake whose dataset tables the schemas must stay compatible with (default: CDP_LAKE)")
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

    audience = sub.add_parser("audience", help="audience tools").add_subparsers(dest="audience_command",
                                                                                 required=True)
    p = audience.add_parser("preview", help="size and sample profile ids of an audience, from the current lake, "
                                            "without writing anything")
    p.add_argument("audience_id")
    p.add_argument("--date", type=dt.date.fromisoformat, required=True, help="evaluation date YYYY-MM-DD")
    p.add_argument("--workspace", default=None, help="workspace folder (default: $CDP_WORKSPACE)")
    p.set_defaults(func=cmd_audience_preview)

    p = sub.add_parser("docs", help="write docs/data_dictionary.md from the table declarations")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    p.set_defaults(func=cmd_docs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


def console() -> None:
    """Entry point of the installed ``cdp`` script."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`cdp validate | head`): no traceback; stdout is pointed at /dev/null so that
        # the interpreter's own flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    raise SystemExit(code)


if __name__ == "__main__":
    console()
