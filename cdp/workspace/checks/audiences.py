"""Audience rules: attributes, event types and fields exist, operators fit their types, values fit
the attribute (a date attribute gets an ISO date, a long a number in range...), ``between`` bounds
are in order, referenced audiences exist and no audience depends on itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import (
    CheckContext,
    attributes_known,
    defined,
    first_reference_note,
    resolve_attribute,
    unknown_attribute_references,
)
from cdp.workspace.models import (
    AttributeCondition,
    EventCondition,
    FieldSpec,
    RecencyCondition,
    Rule,
    SequenceStep,
)
from cdp.workspace.workspace import Workspace

NUMERIC_TYPES = {"integer", "long", "double", "decimal"}
ORDERED_TYPES = NUMERIC_TYPES | {"date", "timestamp", "string"}
STRING_OPS = {"starts_with", "ends_with", "contains", "regex"}
ORDER_OPS = {"<", "<=", ">", ">=", "between"}
# What Spark's integer and long columns hold: a literal beyond that cannot be compared.
INTEGER_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _typed(value: Any, spec_type: str) -> tuple[Any, str | None]:
    """``value`` as the attribute type compares it (for ordering ``between``), or why it cannot be."""
    if spec_type in NUMERIC_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, "the value must be a number"
        low_high = INTEGER_RANGE.get(spec_type)
        if low_high is not None and not low_high[0] <= value <= low_high[1]:
            return None, f"{value} is out of the range of {spec_type} ({low_high[0]} .. {low_high[1]})"
        return value, None
    if spec_type == "date":
        if isinstance(value, dt.datetime):
            return value.date(), None
        if isinstance(value, dt.date):
            return value, None
        try:
            return dt.date.fromisoformat(str(value)), None
        except ValueError:
            return None, f"'{value}' is not an ISO date (YYYY-MM-DD)"
    if spec_type == "timestamp":
        if isinstance(value, dt.datetime):
            out = value
        elif isinstance(value, dt.date):
            out = dt.datetime.combine(value, dt.time(0))
        else:
            try:
                out = dt.datetime.fromisoformat(str(value))
            except ValueError:
                return None, f"'{value}' is not an ISO-8601 time (YYYY-MM-DDTHH:MM:SS, UTC unless an offset is given)"
        return (out if out.tzinfo is not None else out.replace(tzinfo=dt.UTC)), None
    if spec_type == "boolean":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true", None
        return None, "the value must be true or false"
    if isinstance(value, dict | list):
        return None, "the value must be a single value"
    return (value if isinstance(value, str) else str(value)), None


def check_operator(op: str, value: Any, spec: FieldSpec, kind: str, name: str, rel: str,
                   path: str) -> list[WorkspaceProblem]:
    """Whether operator ``op`` with ``value`` fits field ``name`` of ``spec``'s type (``kind``: attribute...)."""
    if op in STRING_OPS and spec.type != "string":
        return [WorkspaceProblem(rel, f"{path}.op", f"'{op}' needs a string {kind}; '{name}' is {spec.type}")]
    if op in ORDER_OPS and spec.type not in ORDERED_TYPES:
        return [WorkspaceProblem(rel, f"{path}.op", f"'{op}' cannot compare {spec.type} {kind} '{name}'")]
    if op in ("exists", "missing"):
        return []
    values = value if isinstance(value, list) else [value]
    typed = []
    for i, v in enumerate(values):
        converted, why = _typed(v, spec.type)
        if why is not None:
            key = f"{path}.value" + (f".{i}" if isinstance(value, list) else "")
            return [WorkspaceProblem(rel, key, f"{kind} '{name}' is {spec.type}; {why}")]
        typed.append(converted)
    if op == "between" and typed[0] > typed[1]:
        return [WorkspaceProblem(rel, f"{path}.value", f"between [{values[0]}, {values[1]}]: the low bound is above "
                                                        "the high bound; write [low, high]")]
    return []


def _check_attribute_condition(ws: Workspace, condition: AttributeCondition, rel: str, path: str,
                               unknown: dict[str, list[tuple[str, str]]]) -> list[WorkspaceProblem]:
    """The attribute exists (dotted paths through objects), match/key fit arrays/maps, the operator fits."""
    spec, why = resolve_attribute(ws.profile_attributes(), condition.attribute)
    if spec is None:
        note = first_reference_note(unknown, condition.attribute, rel, f"{path}.attribute")
        if condition.attribute.split(".")[0] in ws.profile_attributes():
            note = ""  # a known object without that field: this reference's own problem
        return [] if note is None else [WorkspaceProblem(rel, f"{path}.attribute", why + note)]
    if condition.key is not None and spec.type != "map":
        return [WorkspaceProblem(rel, f"{path}.key", f"'key' applies to a map attribute; "
                                                     f"'{condition.attribute}' is {spec.type}")]
    if spec.type == "map":
        if condition.key is None:
            if condition.op in ("exists", "missing"):
                return []
            return [WorkspaceProblem(rel, f"{path}.key", f"attribute '{condition.attribute}' is a map: "
                                                         f"'{condition.op}' needs 'key'")]
        assert spec.values is not None
        spec = spec.values
    if condition.match is not None and spec.type != "array":
        return [WorkspaceProblem(rel, f"{path}.match", f"'match' applies to an array attribute; "
                                                       f"'{condition.attribute}' is {spec.type}")]
    if spec.type == "array":
        assert spec.items is not None
        if condition.op in ("exists", "missing") and condition.match is None:
            return []
        spec = spec.items
    if spec.type in ("object", "array", "map") and condition.op not in ("exists", "missing"):
        return [WorkspaceProblem(rel, f"{path}.op", f"'{condition.op}' cannot compare {spec.type} "
                                                    f"attribute '{condition.attribute}'")]
    return check_operator(condition.op, condition.value, spec, "attribute", condition.attribute, rel, path)


def _check_event_fields(ws: Workspace, event: EventCondition | SequenceStep, scope: list[str], rel: str,
                        path: str) -> list[WorkspaceProblem]:
    """Filters (``where``) and aggregates name fields of the event schemas in scope, with fitting operators."""
    fields: dict[str, FieldSpec] = {}
    for name in scope:
        for f in ws.schema_of(name).fields:
            fields.setdefault(f.name, f)
    problems: list[WorkspaceProblem] = []
    checks: list[tuple[str, str, str, Any]] = [(f"{path}.where.{i}", w.field, w.op, w.value)
                                               for i, w in enumerate(event.where)]
    aggregate = event.aggregate if isinstance(event, EventCondition) else None
    if aggregate is not None:
        checks.append((f"{path}.aggregate", aggregate.field, aggregate.op, aggregate.value))
    for where, name, op, value in checks:
        spec = fields.get(name)
        if spec is None:
            problems.append(WorkspaceProblem(rel, f"{where}.field", f"unknown event field '{name}'"
                                             f" (fields: {defined(fields)})"))
            continue
        if spec.type in ("object", "array", "map"):
            problems.append(WorkspaceProblem(rel, f"{where}.field", f"event field '{name}' is {spec.type}; "
                                                                   "only scalar fields can be compared"))
            continue
        if where.endswith("aggregate") and aggregate is not None:
            fn = aggregate.fn
            if fn in ("sum", "avg") and spec.type not in NUMERIC_TYPES:
                problems.append(WorkspaceProblem(rel, f"{where}.fn", f"'{fn}' needs a numeric event field; "
                                                                     f"'{name}' is {spec.type}"))
                continue
            if fn == "count_distinct":
                problems.extend(check_operator(op, value, FieldSpec(name=name, type="long"),
                                               "count of distinct event field", name, rel, where))
                continue
        problems.extend(check_operator(op, value, spec, "event field", name, rel, where))
    return problems


def _check_node(ws: Workspace, rule: Rule, rel: str, path: str,
                unknown: dict[str, list[tuple[str, str]]]) -> list[WorkspaceProblem]:
    """One node of a rule (its children are visited by Rule.walk)."""
    problems: list[WorkspaceProblem] = []
    condition = rule.attribute_condition
    if condition is not None:
        problems.extend(_check_attribute_condition(ws, condition, rel, path, unknown))
    if rule.audience is not None and rule.audience not in ws.audiences \
            and not ws.is_broken("audiences", rule.audience):
        problems.append(WorkspaceProblem(rel, f"{path}.audience", f"unknown audience '{rule.audience}'"
                                         f" (defined: {defined(ws.audiences)})"))
    steps: list[tuple[str, EventCondition | RecencyCondition | SequenceStep | None]] = [
        ("events", rule.events), ("last_event", rule.last_event)]
    if rule.sequence is not None:
        steps += [("sequence.first", rule.sequence.first), ("sequence.then", rule.sequence.then),
                  ("sequence.not_between", rule.sequence.not_between)]
    for kind, event in steps:
        if event is None:
            continue
        event_types = ws.event_types()
        if event.dataset is not None and event.dataset not in event_types:
            problems.append(WorkspaceProblem(rel, f"{path}.{kind}.dataset",
                                             f"'{event.dataset}' is not an event dataset feeding profiles"))
            continue
        scope = [event.dataset] if event.dataset else list(event_types)
        known = [event_types[d] for d in scope]
        if not scope:
            problems.append(WorkspaceProblem(rel, f"{path}.{kind}", "the workspace has no event dataset"))
            continue
        if all(k is not None for k in known) and not any(event.event_type in (k or set()) for k in known):
            declared = sorted(set().union(*[k for k in known if k]))
            problems.append(WorkspaceProblem(rel, f"{path}.{kind}.type",
                                             f"unknown event type '{event.event_type}'"
                                             f" (declared: {', '.join(declared)})"))
        if isinstance(event, EventCondition | SequenceStep):
            problems.extend(_check_event_fields(ws, event, scope, rel, f"{path}.{kind}"))
    return problems


def audience_cycles(ws: Workspace) -> list[WorkspaceProblem]:
    """Audiences that depend on themselves through ``audience:`` references, one problem per cycle."""
    graph = {a.id: [n.audience for _, n in a.rule.walk() if n.audience is not None] for a in ws.audiences.values()}
    problems: list[WorkspaceProblem] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, []):
            if dep not in graph:
                continue  # unknown audience: reported by the rule check
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    problems.append(WorkspaceProblem(ws.files[f"audiences/{dep}"], "rule",
                                                     f"audiences form a cycle: {' -> '.join(cycle)}"))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for audience_id in sorted(graph):
        if audience_id not in state:
            visit(audience_id, [audience_id])
    return problems


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Every node of every audience's rule, then cycles between audiences."""
    if not attributes_known(ws):
        return []
    problems: list[WorkspaceProblem] = []
    unknown = unknown_attribute_references(ws)
    for audience in ws.audiences.values():
        rel = ws.files[f"audiences/{audience.id}"]
        for path, node in audience.rule.walk():
            problems.extend(_check_node(ws, node, rel, path, unknown))
    problems.extend(audience_cycles(ws))
    return problems
