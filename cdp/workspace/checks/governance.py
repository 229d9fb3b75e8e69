"""Governance: labels, marketing actions and consent purposes are declared; no destination breaks a policy.

Labels on schema fields (nested ones too) and datasets must be core labels (C1-C12, I1-I2, S1-S2) or declared
under ``governance.labels``; a custom label may not reuse a core code. Policies name known labels and actions;
destinations name known actions and declared consent purposes; a purpose's attribute is a boolean profile
attribute. Then every violation (:func:`cdp.governance.policies.violations`) is one problem at the
destination's mapping entry or audience.
"""

from __future__ import annotations

from cdp.errors import WorkspaceProblem
from cdp.governance.policies import violations
from cdp.workspace.checks.base import CheckContext, attributes_known, defined, resolve_attribute
from cdp.workspace.models import CORE_LABELS, CORE_LABELS_TEXT, FieldSpec, Governance
from cdp.workspace.workspace import Workspace

WS_FILE = "workspace.yaml"


def _label_problem(gov: Governance, label: str) -> str | None:
    if label in gov.known_labels:
        return None
    return (f"unknown label '{label}' (core labels {CORE_LABELS_TEXT}; custom labels: {defined(gov.labels)}); "
            "declare it under governance.labels in workspace.yaml or correct it")


def _field_labels(gov: Governance, fields: list[FieldSpec], rel: str, prefix: str) -> list[WorkspaceProblem]:
    problems: list[WorkspaceProblem] = []
    for i, f in enumerate(fields):
        key = f"{prefix}.{i}" if prefix else f"fields.{i}"
        for j, label in enumerate(f.labels):
            message = _label_problem(gov, label)
            if message is not None:
                problems.append(WorkspaceProblem(rel, f"{key}.labels.{j}", message))
        if f.fields:
            problems.extend(_field_labels(gov, f.fields, rel, f"{key}.fields"))
        for name, inner in (("items", f.items), ("values", f.values)):
            if inner is not None:
                problems.extend(_inner(gov, inner, rel, f"{key}.{name}"))
    return problems


def _inner(gov: Governance, spec: FieldSpec, rel: str, key: str) -> list[WorkspaceProblem]:
    """An array's element or a map's value: a field without a position of its own."""
    problems = [WorkspaceProblem(rel, f"{key}.labels.{j}", message) for j, label in enumerate(spec.labels)
                if (message := _label_problem(gov, label)) is not None]
    if spec.fields:
        problems.extend(_field_labels(gov, spec.fields, rel, f"{key}.fields"))
    return problems


def _declarations(ws: Workspace) -> list[WorkspaceProblem]:
    gov = ws.config.governance
    problems = [WorkspaceProblem(WS_FILE, f"governance.labels.{code}", f"'{code}' is a core label; give the custom "
                                 "label another code") for code in gov.labels if code in CORE_LABELS]
    for name, policy in gov.policies.items():
        for i, label in enumerate(policy.labels):
            message = _label_problem(gov, label)
            if message is not None:
                problems.append(WorkspaceProblem(WS_FILE, f"governance.policies.{name}.labels.{i}", message))
        for i, action in enumerate(policy.actions):
            if action not in gov.known_actions:
                problems.append(WorkspaceProblem(WS_FILE, f"governance.policies.{name}.actions.{i}",
                                                 _action_problem(gov, action)))
    if attributes_known(ws):
        attributes = ws.profile_attributes()
        for purpose, spec in gov.consent_purposes.items():
            key = f"governance.consent_purposes.{purpose}.attribute"
            found, why = resolve_attribute(attributes, spec.attribute)
            if found is None:
                problems.append(WorkspaceProblem(WS_FILE, key, why))
            elif found.type != "boolean":
                problems.append(WorkspaceProblem(WS_FILE, key, f"attribute '{spec.attribute}' is {found.type}; a "
                                                 "consent attribute must be boolean (true: consent, false or "
                                                 "missing: none)"))
    return problems


def _action_problem(gov: Governance, action: str) -> str:
    return (f"unknown marketing action '{action}' (known: {defined(gov.known_actions)}); declare it under "
            "governance.marketing_actions in workspace.yaml or correct it")


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Labels, actions and purposes declared (see the module doc), then every policy violation."""
    gov = ws.config.governance
    problems = _declarations(ws)
    for schema in ws.schemas.values():
        problems.extend(_field_labels(gov, schema.fields, ws.files.get(f"schemas/{schema.name}", ""), ""))
    for dataset in ws.datasets.values():
        rel = ws.files.get(f"datasets/{dataset.name}", "")
        problems.extend(WorkspaceProblem(rel, f"labels.{j}", message) for j, label in enumerate(dataset.labels)
                        if (message := _label_problem(gov, label)) is not None)
    for dest in ws.destinations.values():
        rel = ws.files.get(f"destinations/{dest.name}", "")
        for i, action in enumerate(dest.marketing_actions):
            if action not in gov.known_actions:
                problems.append(WorkspaceProblem(rel, f"marketing_actions.{i}", _action_problem(gov, action)))
        for i, purpose in enumerate(dest.consent):
            if purpose not in gov.consent_purposes:
                problems.append(WorkspaceProblem(rel, f"consent.{i}", f"consent purpose '{purpose}' is not declared "
                                                 f"(declared: {defined(gov.consent_purposes)}); declare it under "
                                                 "governance.consent_purposes in workspace.yaml with the boolean "
                                                 "attribute that holds it"))
    # With an unknown label or action, or a schema or dataset file broken, the policies cannot be judged: the
    # problems that stop them are reported; once fixed, the violations are.
    if not problems and attributes_known(ws):
        problems.extend(v.problem() for v in violations(ws))
    return problems
