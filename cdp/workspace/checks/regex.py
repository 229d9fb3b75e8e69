"""Regular expressions and date-time formats, compiled by the Java classes Spark uses (see
:mod:`cdp.workspace.java_patterns`), exactly as the jobs will compile them:

- a namespace's ``pattern`` and ``guardrails.blocked_patterns`` must match the whole value: the validate
  job compiles them as ``^(?:<pattern>)$``, so both the pattern and that anchored form must compile;
- a namespace's ``blocked_patterns`` and an audience's ``regex`` values are found anywhere in the value
  (``rlike``), compiled as written;
- a CSV destination's ``date_format`` and ``timestamp_format`` are Java date-time patterns.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import CheckContext
from cdp.workspace.java_patterns import JavaUnavailable, PatternKind, check_patterns
from cdp.workspace.models import EventFilter, FileDestination, Rule
from cdp.workspace.workspace import Workspace

JAVA_REGEX = "Java syntax, which Spark uses"


@dataclass(frozen=True)
class PatternUse:
    """One pattern of the workspace: where it is, what it is, and whether the platform anchors it."""

    file: str
    key: str
    kind: PatternKind
    text: str
    anchored: bool = False


def _filters(path: str, where: list[EventFilter]) -> list[tuple[str, str]]:
    return [(f"{path}.where.{i}.value", str(w.value)) for i, w in enumerate(where) if w.op == "regex"]


def _rule_regexes(rule: Rule) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path, node in rule.walk():
        if node.attribute is not None and node.op == "regex":
            found.append((f"{path}.value", str(node.value)))
        if node.events is not None:
            found += _filters(f"{path}.events", node.events.where)
        if node.sequence is not None:
            for step_key in ("first", "then", "not_between"):
                step = getattr(node.sequence, step_key)
                if step is not None:
                    found += _filters(f"{path}.sequence.{step_key}", step.where)
    return found


def pattern_uses(ws: Workspace) -> list[PatternUse]:
    """Every regex and date-time format of the workspace, in file order."""
    uses: list[PatternUse] = []
    for i, ns in enumerate(ws.namespaces.values()):
        index = ws.keys.get(f"namespaces/{ns.code}", f"namespaces.{i}")
        if ns.pattern is not None:
            uses.append(PatternUse("namespaces.yaml", f"{index}.pattern", "regex", ns.pattern, anchored=True))
        for j, blocked in enumerate(ns.blocked_patterns):
            uses.append(PatternUse("namespaces.yaml", f"{index}.blocked_patterns.{j}", "regex", blocked))
    for i, blocked in enumerate(ws.config.guardrails.blocked_patterns):
        uses.append(PatternUse("workspace.yaml", f"guardrails.blocked_patterns.{i}", "regex", blocked, anchored=True))
    for audience in ws.audiences.values():
        rel = ws.files[f"audiences/{audience.id}"]
        uses += [PatternUse(rel, key, "regex", text) for key, text in _rule_regexes(audience.rule)]
    for dest in ws.destinations.values():
        if isinstance(dest, FileDestination) and dest.format == "csv":
            rel = ws.files[f"destinations/{dest.name}"]
            uses.append(PatternUse(rel, "csv.date_format", "datetime", dest.csv.date_format))
            uses.append(PatternUse(rel, "csv.timestamp_format", "datetime", dest.csv.timestamp_format))
    return uses


def anchored(pattern: str) -> str:
    """How the validate job matches a whole value (cdp/ingestion/checks.py ``_full_match``)."""
    return f"^(?:{pattern})$"


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Compile every pattern in one JVM; one problem per pattern that does not compile."""
    uses = pattern_uses(ws)
    if not uses:
        return []
    wanted = [(u.kind, u.text) for u in uses] + [("regex", anchored(u.text)) for u in uses if u.anchored]
    try:
        results = check_patterns(wanted)
    except JavaUnavailable as exc:
        # One cause (no Java), one problem: on the first pattern that needed it.
        return [WorkspaceProblem(uses[0].file, uses[0].key, str(exc))]
    problems: list[WorkspaceProblem] = []
    for use in uses:
        error = results[(use.kind, use.text)]
        if error is not None:
            what = f"a valid regular expression ({JAVA_REGEX})" if use.kind == "regex" else \
                "a valid date-time format (Java DateTimeFormatter pattern, which Spark uses)"
            problems.append(WorkspaceProblem(use.file, use.key, f"is not {what}: {error}"))
        elif use.anchored and (error := results[("regex", anchored(use.text))]) is not None:
            problems.append(WorkspaceProblem(use.file, use.key, f"cannot be anchored to match the whole value: "
                                             f"the platform matches {anchored(use.text)!r}, which is not a valid "
                                             f"regular expression ({JAVA_REGEX}): {error}"))
    return problems
