"""Which destinations a usage policy forbids, and why: field -> label -> policy -> destination.

A destination declares ``marketing_actions``; a policy of ``governance.policies`` forbids ``labels`` for
``actions``. A destination violates a policy when one of its actions is one of the policy's and

- a mapped column comes from a dataset field carrying a forbidden label: an attribute comes from the field
  of that name in every profile dataset (the merge may take its value from any of them), an identity
  namespace from every identity field of that namespace in an identity-enabled dataset;
- or one of its audiences' rules (audiences it references included) reads such a field: an attribute
  condition, or an event filter / aggregate field / event type in the event datasets it reads.

A field carries its own labels, those of the object fields it is nested in, and those of its dataset.
Everything here reads the loaded models only: the same answer at ``cdp validate`` and at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cdp.errors import PolicyViolationError, WorkspaceProblem
from cdp.workspace.models import (
    PROFILE_ID_SOURCE,
    DatasetSpec,
    DestinationSpec,
    EventFilter,
    FieldSpec,
    Rule,
)
from cdp.workspace.workspace import Workspace


@dataclass(frozen=True)
class LabelledField:
    """One dataset field a destination's data comes from, with the labels it carries."""

    dataset: str
    path: str  # the field, dotted through object fields
    labels: tuple[tuple[str, bool], ...]  # (label, carried by the whole dataset)

    @property
    def name(self) -> str:
        return f"{self.dataset}.{self.path}"


@dataclass(frozen=True)
class Violation:
    """A destination that uses a field labelled with a label a policy forbids for one of its actions."""

    file: str
    key: str
    destination: str
    action: str
    use: str  # "exports attribute phone", "activates audience x whose rule uses attribute tier"
    field: str
    label: str
    on_dataset: bool
    policy: str

    @property
    def message(self) -> str:
        where = " (a label of the whole dataset)" if self.on_dataset else ""
        return (f"destination {self.destination} (action {self.action}) {self.use} from {self.field}, labelled "
                f"{self.label}{where} and forbidden by policy {self.policy}")

    def problem(self) -> WorkspaceProblem:
        return WorkspaceProblem(self.file, self.key, self.message)


def _path_labels(fields: list[FieldSpec], path: str) -> list[str] | None:
    """The labels along a dotted path through object fields (outer first), or None when it names no field."""
    labels: list[str] = []
    current: list[FieldSpec] | None = fields
    for part in path.split("."):
        spec = next((f for f in current or [] if f.name == part), None)
        if spec is None:
            return None
        labels.extend(spec.labels)
        current = spec.fields if spec.type == "object" else None
    return labels


def _labelled(ws: Workspace, dataset: DatasetSpec, path: str) -> LabelledField | None:
    schema = ws.schemas.get(dataset.schema_)
    if schema is None:
        return None
    own = _path_labels(schema.fields, path)
    if own is None:
        return None
    labels: list[tuple[str, bool]] = []
    for label, whole in [(x, False) for x in own] + [(x, True) for x in dataset.labels]:
        if label not in [seen for seen, _ in labels]:
            labels.append((label, whole))
    return LabelledField(dataset.name, path, tuple(labels))


def attribute_fields(ws: Workspace, path: str) -> list[LabelledField]:
    """The profile datasets' fields a profile attribute (dotted path) takes its value from."""
    found = [_labelled(ws, d, path) for d in ws.profile_datasets]
    return [f for f in found if f is not None]


def identity_fields(ws: Workspace, namespace: str) -> list[LabelledField]:
    """The identity fields of a namespace in the identity-enabled datasets (they feed the identity map)."""
    out: list[LabelledField] = []
    for dataset in ws.identity_datasets:
        schema = ws.schemas.get(dataset.schema_)
        for f in schema.identity_fields if schema is not None else []:
            if f.identity is not None and f.identity.namespace == namespace:
                found = _labelled(ws, dataset, f.name)
                if found is not None:
                    out.append(found)
    return out


def _event_fields(ws: Workspace, dataset: str | None, names: list[str], reads_type: bool) -> Iterator[
        tuple[str, LabelledField]]:
    for d in ws.event_datasets:
        if dataset is not None and d.name != dataset:
            continue
        schema = ws.schemas.get(d.schema_)
        if schema is None:
            continue
        wanted = list(names)
        if reads_type and schema.event_type_field:
            wanted.insert(0, schema.event_type_field)
        for name in dict.fromkeys(wanted):
            found = _labelled(ws, d, name)
            if found is not None:
                yield f"event field {name}", found


def _filters(where: list[EventFilter]) -> list[str]:
    return [w.field for w in where]


def rule_fields(ws: Workspace, rule: Rule, seen: frozenset[str] = frozenset()) -> Iterator[tuple[str, LabelledField]]:
    """(what the rule reads, the field) for every dataset field an audience rule reads, referenced audiences
    included (each once: a cycle is reported by the audience checks)."""
    for _path, node in rule.walk():
        if node.attribute is not None:
            for f in attribute_fields(ws, node.attribute):
                yield f"attribute {node.attribute}", f
        if node.events is not None:
            ev = node.events
            names = _filters(ev.where) + ([ev.aggregate.field] if ev.aggregate is not None else [])
            yield from _event_fields(ws, ev.dataset, names, True)
        if node.last_event is not None:
            yield from _event_fields(ws, node.last_event.dataset, [], True)
        if node.sequence is not None:
            steps = [node.sequence.first, node.sequence.then] + (
                [node.sequence.not_between] if node.sequence.not_between is not None else [])
            for step in steps:
                yield from _event_fields(ws, step.dataset, _filters(step.where), True)
        if node.audience is not None and node.audience not in seen and node.audience in ws.audiences:
            yield from rule_fields(ws, ws.audiences[node.audience].rule, seen | {node.audience})


def _uses(ws: Workspace, dest: DestinationSpec) -> Iterator[tuple[str, str, LabelledField]]:
    """(key, use, field) for every field the destination exports or whose audiences read it, in file order."""
    for i, mapped in enumerate(dest.mapping):
        if mapped.source == PROFILE_ID_SOURCE:
            continue
        if mapped.namespace is not None:
            for f in identity_fields(ws, mapped.namespace):
                yield f"mapping.{i}", f"exports identity {mapped.namespace}", f
        else:
            for f in attribute_fields(ws, mapped.source):
                yield f"mapping.{i}", f"exports attribute {mapped.source}", f
    for i, audience_id in enumerate(dest.audiences):
        audience = ws.audiences.get(audience_id)
        if audience is None:
            continue
        reported: set[tuple[str, str]] = set()
        for what, f in rule_fields(ws, audience.rule, frozenset({audience_id})):
            if (what, f.name) not in reported:
                reported.add((what, f.name))
                yield f"audiences.{i}", f"activates audience {audience_id} whose rule uses {what}", f


def violations(ws: Workspace, only: str | None = None) -> list[Violation]:
    """Every violation of every destination (or of destination ``only``), in destination, mapping and audience
    order; for each field, by label, action and policy name."""
    policies = ws.config.governance.policies
    out: list[Violation] = []
    for dest in ws.destinations.values():
        if only is not None and dest.name != only:
            continue
        if not dest.marketing_actions:
            continue
        rel = ws.files.get(f"destinations/{dest.name}", f"destinations/{dest.name}.yaml")
        for key, use, f in _uses(ws, dest):
            for label, whole in f.labels:
                for action in dest.marketing_actions:
                    for name in sorted(policies):
                        policy = policies[name]
                        if label in policy.labels and action in policy.actions:
                            out.append(Violation(rel, key, dest.name, action, use, f.name, label, whole, name))
    return out


def enforce(ws: Workspace, destination: str) -> None:
    """Raise :class:`PolicyViolationError` listing every violation of ``destination``; called by the export step
    before anything is computed, rendered or sent, so that a workspace changed after ``cdp validate`` cannot leak."""
    found = violations(ws, destination)
    if found:
        lines = "\n".join(f"  - {v.problem()}" for v in found)
        raise PolicyViolationError(
            f"destination {destination} is blocked by the workspace's usage policies, nothing was sent "
            f"({len(found)} violation(s)):\n{lines}\nRemove the field or audience from the destination, change "
            "its marketing_actions, or change the policy; then run cdp validate and re-run the task")
