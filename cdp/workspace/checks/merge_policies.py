"""Merge policies: the default is named once, every policy an audience names exists, precedence lists
name profile datasets."""

from __future__ import annotations

from cdp.errors import WorkspaceProblem
from cdp.workspace.checks.base import CheckContext, attributes_known, defined
from cdp.workspace.models import IMPLICIT_DEFAULT_POLICY, WorkspaceFile
from cdp.workspace.workspace import Workspace

REL = "workspace.yaml"


def _default_policy(config: WorkspaceFile) -> list[WorkspaceProblem]:
    """The default merge policy is named once, by default_merge_policy or by the top-level merge_policy keys."""
    if config.default_merge_policy is None:
        if IMPLICIT_DEFAULT_POLICY in config.merge_policies:
            return [WorkspaceProblem(REL, f"merge_policies.{IMPLICIT_DEFAULT_POLICY}",
                                     f"'{IMPLICIT_DEFAULT_POLICY}' names the policy of merge_policy / "
                                     "dataset_precedence: choose another name, or name the default with "
                                     "default_merge_policy")]
        return []
    problems = []
    if config.default_merge_policy not in config.merge_policies:
        problems.append(WorkspaceProblem(REL, "default_merge_policy", f"unknown merge policy "
                                         f"'{config.default_merge_policy}' (merge_policies: "
                                         f"{defined(config.merge_policies)})"))
    for key in sorted({"merge_policy", "dataset_precedence"} & config.model_fields_set):
        problems.append(WorkspaceProblem(REL, key, "conflicts with default_merge_policy: describe the default "
                                         "policy in merge_policies instead"))
    return problems


def check(ws: Workspace, ctx: CheckContext) -> list[WorkspaceProblem]:
    """Default policy, audiences' policy names, precedence datasets."""
    problems = _default_policy(ws.config)
    policies = ws.config.policies
    for audience in ws.audiences.values():
        if audience.merge_policy is not None and audience.merge_policy not in policies:
            problems.append(WorkspaceProblem(ws.files[f"audiences/{audience.id}"], "merge_policy",
                                             f"unknown merge policy '{audience.merge_policy}'"
                                             f" (defined: {defined(policies)})"))
    if not attributes_known(ws):
        return problems
    profile_datasets = [d.name for d in ws.profile_datasets]
    precedences = [(f"merge_policies.{name}.datasets", p.datasets) for name, p in ws.config.merge_policies.items()]
    precedences.append(("dataset_precedence", ws.config.dataset_precedence))
    for key, names in precedences:
        for i, name in enumerate(names):
            if name not in profile_datasets:
                problems.append(WorkspaceProblem(REL, f"{key}.{i}", f"'{name}' is not a profile "
                                                 f"dataset (profile datasets: {', '.join(profile_datasets)})"))
    return problems
