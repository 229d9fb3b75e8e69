"""Named merge policies in workspace.yaml, the audience override, the segmentation cap's default, the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp.errors import WorkspaceError
from cdp.report import format_report
from cdp.workspace.loader import load_workspace
from cdp.workspace.models import MergePolicy
from jobs.evaluate_audiences import other_policies

POLICIES = """merge_policies:
  newest: {type: timestamp_ordered}
  also_newest: {type: timestamp_ordered}
  loyalty_first: {type: dataset_precedence, datasets: [loyalty_members]}
default_merge_policy: newest
"""


@pytest.fixture()
def workspace(tmp_path: Path, repo_root: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", dest)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def problems_of(root: Path) -> list[str]:
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(root)
    return [str(p) for p in caught.value.problems]


def test_legacy_keys_are_the_implicit_default(repo_root: Path) -> None:
    config = load_workspace(repo_root / "examples" / "retail").config
    assert config.default_policy_name == "default"
    assert config.policy() == MergePolicy(type="timestamp_ordered")
    assert config.guardrails.max_events_per_profile == 5000


def test_named_policies_and_audience_override(workspace: Path) -> None:
    edit(workspace / "workspace.yaml", "merge_policy: timestamp_ordered\n", POLICIES)
    edit(workspace / "audiences" / "gold_members.yaml", "rule:", "merge_policy: loyalty_first\nrule:")
    edit(workspace / "audiences" / "french_high_points.yaml", "rule:", "merge_policy: also_newest\nrule:")
    ws = load_workspace(workspace)
    assert ws.config.default_policy_name == "newest"
    assert ws.config.policy("loyalty_first") == MergePolicy(type="dataset_precedence", datasets=["loyalty_members"])
    assert ws.audiences["gold_members"].merge_policy == "loyalty_first"
    # Only a policy that merges differently from the default costs a merge (also_newest is the same).
    assert other_policies(ws, list(ws.audiences.values())) == ["loyalty_first"]


def test_policy_mistakes_name_file_and_key(workspace: Path) -> None:
    edit(workspace / "workspace.yaml", "merge_policy: timestamp_ordered\n", """merge_policy: timestamp_ordered
merge_policies:
  crm_first: {type: dataset_precedence, datasets: [crm_profiles, web_events]}
default_merge_policy: newest
""")
    edit(workspace / "audiences" / "gold_members.yaml", "rule:", "merge_policy: oldest\nrule:")
    assert problems_of(workspace) == [
        "workspace.yaml: default_merge_policy: unknown merge policy 'newest' (merge_policies: crm_first)",
        "workspace.yaml: merge_policy: conflicts with default_merge_policy: describe the default policy in "
        "merge_policies instead",
        "audiences/gold_members.yaml: merge_policy: unknown merge policy 'oldest' (defined: crm_first)",
        "workspace.yaml: merge_policies.crm_first.datasets.1: 'web_events' is not a profile dataset "
        "(profile datasets: crm_profiles, loyalty_members)",
    ]


def test_policy_shape_errors(workspace: Path) -> None:
    edit(workspace / "workspace.yaml", "merge_policy: timestamp_ordered\n", """merge_policies:
  default: {type: timestamp_ordered}
  trusted: {type: dataset_precedence}
  newest: {type: timestamp_ordered, datasets: [crm_profiles]}
""")
    assert problems_of(workspace) == [
        "workspace.yaml: merge_policies.trusted: Value error, type dataset_precedence needs 'datasets' "
        "(most trusted first)",
        "workspace.yaml: merge_policies.newest: Value error, 'datasets' applies to type dataset_precedence only",
    ]
    edit(workspace / "workspace.yaml", "  trusted: {type: dataset_precedence}\n  newest: "
         "{type: timestamp_ordered, datasets: [crm_profiles]}\n", "")
    assert problems_of(workspace) == [
        "workspace.yaml: merge_policies.default: 'default' names the policy of merge_policy / dataset_precedence: "
        "choose another name, or name the default with default_merge_policy"]


def test_report_shows_profiles_left_out() -> None:
    report = {"run_date": "2026-03-01", "files": [], "metrics": {"evaluate_audiences": {"all": {
        "audiences": 1, "excluded.event_cap": 2, "excluded.identity_cap": 1,
        "gold.size": 3, "gold.realized": 1, "gold.existing": 2, "gold.exited": 0}}}}
    assert format_report(report).splitlines()[2:] == [
        "left out of audience evaluation: 2 profile(s) over the event cap (max_events_per_profile), 1 over the "
        "identity cap (max_identities_per_graph)",
        "",
        f"{'audience':<24}{'size':>8}{'realized':>10}{'existing':>10}{'exited':>8}",
        f"{'gold':<24}{3:>8}{1:>10}{2:>10}{0:>8}",
    ]
