"""Paths: placeholders are known, and local paths stay under their root.

A dataset's local ``source.path`` is a folder under the landing root, a local destination's ``path`` a
folder under the exports root (both from :meth:`cdp.settings.Settings.from_env`, or the settings a
job runs with). ``..``, an absolute path or a symbolic link that leads out of the root is refused,
unless workspace.yaml allows it (``paths: {allow_outside_landing_root: true}`` /
``{allow_outside_exports_root: true}``): a typo must not make the platform read or write elsewhere.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import CheckContext
from cdp.workspace.models import (
    DATASET_PATH_PLACEHOLDERS,
    DESTINATION_PATH_PLACEHOLDERS,
    FileDestination,
    LocalDestination,
)
from cdp.workspace.workspace import Workspace

SAMPLE_DATE = "2000-01-01"


def placeholder_problem(path: str, allowed: tuple[str, ...]) -> str | None:
    """Why ``path``'s ``{placeholders}`` are not usable (unknown name, format spec, stray brace), or None."""
    known = ", ".join(f"{{{p}}}" for p in allowed)
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(path) if name is not None]
    except ValueError:
        return f"has a '{{' or '}}' that is not part of a placeholder (placeholders: {known})"
    for name, spec, conv in fields:
        if name not in allowed:
            return f"unknown placeholder {{{name}}} (placeholders: {known})"
        if spec or conv:
            return f"placeholder {{{name}}} takes no format or conversion; write {{{name}}}"
    return None


def render(path: str, destination: str = "") -> str:
    """The path with sample values for its placeholders (placeholders already checked)."""
    return path.format(date=SAMPLE_DATE, destination=destination)


def outside_root(root: str, relative: str) -> str | None:
    """Why ``relative`` (rendered) leaves ``root``: absolute, ``..`` or a symbolic link out; None if it stays."""
    if os.path.isabs(relative):
        return "is an absolute path"
    if ".." in Path(relative).parts:
        resolved = os.path.normpath(os.path.join(root, relative))
        base = os.path.normpath(root)
        if os.path.commonpath([resolved, base]) != base:
            return "goes up out of it with '..'"
    real_root = Path(root).resolve()
    real = (Path(root) / relative).resolve()
    if not real.is_relative_to(real_root):
        return f"leads to {real} through a symbolic link"
    return None


def _root_problem(root: str, relative: str, what: str, allow_key: str) -> str | None:
    if "://" in root:  # an object-store root: nothing on this machine to resolve
        return None
    why = outside_root(root, relative)
    if why is None:
        return None
    return (f"'{relative}' leaves the {what} root ({root}): it {why}; use a folder under the root, or allow it "
            f"with paths: {{{allow_key}: true}} in workspace.yaml")


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Dataset source paths and destination paths: placeholders, {date} in sources, roots."""
    problems: list[WorkspaceProblem] = []
    allow = ws.config.paths
    for dataset in ws.datasets.values():
        rel, path = ws.files[f"datasets/{dataset.name}"], dataset.source.path
        wrong = placeholder_problem(path, DATASET_PATH_PLACEHOLDERS)
        if wrong is not None:
            problems.append(WorkspaceProblem(rel, "source.path", wrong))
            continue
        if "{date}" not in path:
            problems.append(WorkspaceProblem(rel, "source.path",
                                             "must contain {date} so that each run reads its own day"))
            continue
        if dataset.source.type == "local" and not allow.allow_outside_landing_root:
            why = _root_problem(ctx.settings.landing, render(path), "landing", "allow_outside_landing_root")
            if why is not None:
                problems.append(WorkspaceProblem(rel, "source.path", why))
    for dest in ws.destinations.values():
        if not isinstance(dest, FileDestination):
            continue  # an HTTP destination's path is a URL path, not a folder
        rel = ws.files[f"destinations/{dest.name}"]
        wrong = placeholder_problem(dest.path, DESTINATION_PATH_PLACEHOLDERS)
        if wrong is not None:
            problems.append(WorkspaceProblem(rel, "path", wrong))
            continue
        if isinstance(dest, LocalDestination) and not allow.allow_outside_exports_root:
            why = _root_problem(ctx.settings.exports, render(dest.path, dest.name), "exports",
                                "allow_outside_exports_root")
            if why is not None:
                problems.append(WorkspaceProblem(rel, "path", why))
    return problems
