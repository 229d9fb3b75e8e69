"""Cross-file checks of a loaded workspace, one module per area, run by :func:`run_checks`.

Each module has ``check(ws, ctx) -> list[WorkspaceProblem]``; a new area (governance policies, streaming
destinations...) is one new module added to CHECKS. The order is the order problems are listed in.
Ranges of single values (guardrail shares, counts, sizes, windows) are declared on the models and
reported by the loader; these modules hold what needs more than one value or file.

A check never reports what follows from a problem another check reports: a reference to a broken
file (``Workspace.broken``) or to an undeclared namespace is reported once, where it is caused.
"""

from __future__ import annotations

from collections.abc import Callable

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks import (
    audiences,
    datasets,
    destinations,
    governance,
    merge_policies,
    namespaces,
    paths,
    regex,
    schemas,
)
from cdp.workspace.checks.base import CheckContext
from cdp.workspace.workspace import Workspace

Check = Callable[[Workspace, CheckContext], list[WorkspaceProblem]]

CHECKS: tuple[Check, ...] = (
    merge_policies.check,
    schemas.check,
    namespaces.check,
    datasets.check,
    paths.check,
    audiences.check,
    destinations.check,
    regex.check,
    governance.check,
)

__all__ = ["CHECKS", "Check", "CheckContext", "run_checks"]


def run_checks(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Every check of CHECKS, in order; their problems, in order."""
    problems: list[WorkspaceProblem] = []
    for check in CHECKS:
        problems.extend(check(ws, ctx))
    return problems
