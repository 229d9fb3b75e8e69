"""Governance in the workspace: labels, marketing actions, usage policies and consent purposes are declared, and
every destination that would export a labelled field (or activate an audience whose rule reads one) for an action
a policy forbids it for is refused by cdp validate, naming field -> label -> policy -> destination."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from cdp.errors import PolicyViolationError, WorkspaceError
from cdp.governance.policies import enforce, violations
from cdp.workspace.loader import load_workspace
from cdp.workspace.models import UsagePolicy


@pytest.fixture()
def workspace(tmp_path: Path, repo_root: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", dest)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def problems_of(root: Path) -> list[str]:
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(root)
    return [str(p) for p in caught.value.problems]


def test_the_example_declares_policies_it_satisfies(repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    gov = ws.config.governance
    assert sorted(gov.policies) == ["loyalty_in_house", "no_browsing_science", "no_sensitive_ads"]
    assert ws.destinations["ads_partner_s3"].marketing_actions == ["segment_match", "export_to_third_party"]
    assert ws.destinations["partner_sftp"].consent == ["marketing.direct_mail"]
    assert ws.datasets["web_events"].labels == ["C9"]
    assert violations(ws) == []


def test_undeclared_labels_actions_and_purposes(workspace: Path) -> None:
    edit(workspace / "schemas" / "crm_profile.yaml", "{name: city, type: string}",
         "{name: city, type: string, labels: [C2, geo]}")
    edit(workspace / "datasets" / "web_events.yaml", "labels: [C9]", "labels: [C9, C13]")
    edit(workspace / "destinations" / "analytics_gcs.yaml", "marketing_actions: [analytics]",
         "marketing_actions: [analytics, telepathy]")
    edit(workspace / "destinations" / "partner_sftp.yaml", "consent: [marketing.direct_mail]",
         "consent: [marketing.direct_mail, marketing.sms]")
    custom = "custom labels: loyalty_internal); declare it under governance.labels in workspace.yaml or correct it"
    assert problems_of(workspace) == [
        f"schemas/crm_profile.yaml: fields.7.labels.1: unknown label 'geo' (core labels C1-C12, I1-I2, S1-S2; {custom}",
        f"datasets/web_events.yaml: labels.1: unknown label 'C13' (core labels C1-C12, I1-I2, S1-S2; {custom}",
        "destinations/analytics_gcs.yaml: marketing_actions.1: unknown marketing action 'telepathy' (known: analytics, "
        "combine_with_pii, cross_site_targeting, data_science, direct_mail, email_targeting, export_to_third_party, "
        "onsite_advertising, onsite_personalization, segment_match, single_identity_personalization); declare it "
        "under governance.marketing_actions in workspace.yaml or correct it",
        "destinations/partner_sftp.yaml: consent.1: consent purpose 'marketing.sms' is not declared (declared: "
        "marketing.direct_mail); declare it under governance.consent_purposes in workspace.yaml with the boolean "
        "attribute that holds it",
    ]


def test_governance_block_mistakes(workspace: Path) -> None:
    ws_file = workspace / "workspace.yaml"
    edit(ws_file, "    loyalty_internal: {description:", "    C3: {}\n    loyalty_internal: {description:")
    edit(ws_file, "labels: [loyalty_internal]\n      actions: [export_to_third_party]",
         "labels: [loyalty_internl]\n      actions: [export_to_3rd_party]")
    edit(ws_file, "{attribute: consent_marketing,", "{attribute: country,")
    custom = "custom labels: C3, loyalty_internal); declare it under governance.labels in workspace.yaml or correct it"
    found = problems_of(workspace)
    assert found[:3] == [
        "workspace.yaml: governance.labels.C3: 'C3' is a core label; give the custom label another code",
        f"workspace.yaml: governance.policies.loyalty_in_house.labels.0: unknown label 'loyalty_internl' (core labels "
        f"C1-C12, I1-I2, S1-S2; {custom}",
        "workspace.yaml: governance.policies.loyalty_in_house.actions.0: unknown marketing action 'export_to_3rd_party'"
        " (known: analytics, combine_with_pii, cross_site_targeting, data_science, direct_mail, email_targeting, "
        "export_to_third_party, onsite_advertising, onsite_personalization, segment_match, "
        "single_identity_personalization); declare it under governance.marketing_actions in workspace.yaml or "
        "correct it",
    ]
    assert found[3:] == [
        "workspace.yaml: governance.consent_purposes.marketing.direct_mail.attribute: attribute 'country' is string; "
        "a consent attribute must be boolean (true: consent, false or missing: none)"]


def test_forbidden_directly_through_an_identity_and_through_an_audience_rule(workspace: Path) -> None:
    # C2 (no export to third parties) on the CRM's phone and country, C12 on the loyalty tier: the ads partner
    # exports the phone identity and the country, and activates gold_members, whose rule reads the tier.
    edit(workspace / "schemas" / "crm_profile.yaml", "identity: {namespace: phone}, labels: [I1]",
         "identity: {namespace: phone}, labels: [I1, C2]")
    edit(workspace / "schemas" / "crm_profile.yaml", "{name: country, type: string}",
         "{name: country, type: string, labels: [C2]}")
    edit(workspace / "schemas" / "loyalty_member.yaml", "{name: tier, type: string,",
         "{name: tier, type: string, labels: [C12],")
    ads = "destinations/ads_partner_s3.yaml"
    sftp = "destinations/partner_sftp.yaml"
    policy = "forbidden by policy no_sensitive_ads"
    assert problems_of(workspace) == [
        f"{ads}: mapping.1: destination ads_partner_s3 (action segment_match) exports identity phone from "
        f"crm_profiles.phone, labelled C2 and {policy}",
        f"{ads}: mapping.1: destination ads_partner_s3 (action export_to_third_party) exports identity phone from "
        f"crm_profiles.phone, labelled C2 and {policy}",
        f"{ads}: mapping.2: destination ads_partner_s3 (action segment_match) exports attribute country from "
        f"crm_profiles.country, labelled C2 and {policy}",
        f"{ads}: mapping.2: destination ads_partner_s3 (action export_to_third_party) exports attribute country from "
        f"crm_profiles.country, labelled C2 and {policy}",
        f"{ads}: audiences.0: destination ads_partner_s3 (action segment_match) activates audience gold_members "
        f"whose rule uses attribute tier from loyalty_members.tier, labelled C12 and {policy}",
        f"{ads}: audiences.0: destination ads_partner_s3 (action export_to_third_party) activates audience "
        f"gold_members whose rule uses attribute tier from loyalty_members.tier, labelled C12 and {policy}",
        f"{sftp}: audiences.0: destination partner_sftp (action export_to_third_party) activates audience "
        f"french_high_points whose rule uses attribute country from crm_profiles.country, labelled C2 and {policy}",
    ]


def test_dataset_labels_reach_event_fields_of_audiences_of_audiences(workspace: Path) -> None:
    # C9 is on the whole web_events dataset: an audience built on cart_abandoners (web events) reads it too.
    (workspace / "audiences" / "abandoners_gold.yaml").write_text(
        "id: abandoners_gold\nname: Gold cart abandoners\nrule:\n  all:\n    - audience: cart_abandoners\n"
        "    - audience: gold_members\n")
    edit(workspace / "destinations" / "crm_sync_azure.yaml", "audiences: [gold_members, cart_abandoners]",
         "audiences: [gold_members, abandoners_gold]")
    edit(workspace / "destinations" / "crm_sync_azure.yaml", "marketing_actions: [single_identity_personalization]",
         "marketing_actions: [data_science]")
    # The CRM id it exports comes from the web events too (a logged-in hit carries it): also labelled C9.
    assert problems_of(workspace) == [
        "destinations/crm_sync_azure.yaml: mapping.0: destination crm_sync_azure (action data_science) exports "
        "identity crm_id from web_events.crm_id, labelled C9 (a label of the whole dataset) and forbidden by policy "
        "no_browsing_science",
        "destinations/crm_sync_azure.yaml: audiences.1: destination crm_sync_azure (action data_science) activates "
        "audience abandoners_gold whose rule uses event field event_type from web_events.event_type, labelled C9 "
        "(a label of the whole dataset) and forbidden by policy no_browsing_science"]


def test_a_label_a_policy_forbids_only_for_other_actions_is_allowed(workspace: Path) -> None:
    # loyalty_internal is forbidden for export_to_third_party; the CRM team's own sync may carry it.
    edit(workspace / "destinations" / "crm_sync_azure.yaml", "  - {source: points}",
         "  - {source: points}\n  - {source: joined_on}")
    ws = load_workspace(workspace)
    assert violations(ws) == []
    enforce(ws, "crm_sync_azure")  # raises nothing


def test_enforce_names_every_violation_of_the_destination(repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    # The workspace as a later run sees it: a policy now forbids I1 (the e-mail) for segment matching.
    gov = ws.config.governance.model_copy(update={"policies": {
        **ws.config.governance.policies, "no_pii_match": UsagePolicy(labels=["I1"], actions=["segment_match"])}})
    changed = dataclasses.replace(ws, config=ws.config.model_copy(update={"governance": gov}))
    enforce(changed, "marketing_landing")  # email_targeting: not forbidden
    with pytest.raises(PolicyViolationError) as caught:
        enforce(changed, "ads_partner_s3")
    lines = [f"  - destinations/ads_partner_s3.yaml: mapping.{i}: destination ads_partner_s3 (action segment_match) "
             f"exports identity {ns} from {field}, labelled I1 and forbidden by policy no_pii_match"
             for i, ns, field in ((0, "email", "crm_profiles.email"), (0, "email", "email_events.email"),
                                  (0, "email", "loyalty_members.email"), (1, "phone", "crm_profiles.phone"))]
    assert str(caught.value) == (
        "destination ads_partner_s3 is blocked by the workspace's usage policies, nothing was sent (4 violation(s)):\n"
        + "\n".join(lines) + "\nRemove the field or audience from the destination, change its marketing_actions, or "
        "change the policy; then run cdp validate and re-run the task")
    assert caught.value.retryable is False


def test_cdp_validate_prints_every_violation_and_fails(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cdp.cli import main

    # S1 (sensitive) on the birth date, now exported to the direct-mail partner, a third party.
    edit(workspace / "destinations" / "partner_sftp.yaml", "  - {source: city}", "  - {source: city}\n"
         "  - {source: birth_date}")
    assert main(["validate", str(workspace)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{workspace}/destinations/partner_sftp.yaml: mapping.4: destination partner_sftp (action "
        "export_to_third_party) exports attribute birth_date from crm_profiles.birth_date, labelled S1 and forbidden "
        "by policy no_sensitive_ads",
        "1 problem(s) found",
    ]
