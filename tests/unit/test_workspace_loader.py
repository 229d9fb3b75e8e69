"""The workspace loader: the example loads, and every kind of mistake is reported with file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp.errors import WorkspaceError
from cdp.workspace.loader import load_workspace


@pytest.fixture()
def workspace(tmp_path: Path, repo_root: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", dest)
    return dest


def problems_of(root: Path) -> list[str]:
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(root)
    return [str(p) for p in caught.value.problems]


def test_example_workspace_loads(repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    assert sorted(ws.datasets) == ["crm_profiles", "email_events", "loyalty_members", "web_events"]
    assert [d.name for d in ws.profile_datasets] == ["crm_profiles", "loyalty_members"]
    assert ws.profile_attributes()["points"].type == "long"


def test_unknown_key_in_audience(workspace: Path) -> None:
    path = workspace / "audiences" / "gold_members.yaml"
    path.write_text(path.read_text().replace("op: in", "op: in\n  colour: red"))
    assert problems_of(workspace) == ["audiences/gold_members.yaml: rule.colour: unknown key"]


def test_dataset_with_undefined_schema(workspace: Path) -> None:
    path = workspace / "datasets" / "web_events.yaml"
    path.write_text(path.read_text().replace("schema: web_event", "schema: web_hit"))
    assert problems_of(workspace) == [
        "datasets/web_events.yaml: schema: schema 'web_hit' is not defined"
        " (defined: crm_profile, email_event, loyalty_member, web_event)"
    ]


def test_destination_mapping_undefined_attribute_and_every_problem_listed(workspace: Path) -> None:
    dest = workspace / "destinations" / "marketing_landing.yaml"
    dest.write_text(dest.read_text().replace("{source: country}", "{source: favourite_colour}"))
    audience = workspace / "audiences" / "gold_members.yaml"
    audience.write_text(audience.read_text().replace("attribute: tier", "attribute: tierr"))
    found = problems_of(workspace)
    assert "destinations/marketing_landing.yaml: mapping.4.source: attribute 'favourite_colour' is not a " \
           "profile attribute" in found
    assert any(p.startswith("audiences/gold_members.yaml: rule.attribute: unknown attribute 'tierr'") for p in found)
    assert len(found) == 2


def test_operator_type_mismatch_and_unknown_event_type(workspace: Path) -> None:
    (workspace / "audiences" / "bad.yaml").write_text(
        "id: bad\nname: Bad\nrule:\n  any:\n"
        "    - {attribute: points, op: starts_with, value: '1'}\n"
        "    - events: {type: checkout, at_least: 1, within: {last_days: 3}}\n"
    )
    assert problems_of(workspace) == [
        "audiences/bad.yaml: rule.any.0.op: 'starts_with' needs a string attribute; 'points' is long",
        "audiences/bad.yaml: rule.any.1.events.type: unknown event type 'checkout' (declared: add_to_cart,"
        " click, open, page_view, product_view, purchase, sent, unsubscribe)",
    ]


def test_broken_yaml_names_the_file(workspace: Path) -> None:
    (workspace / "namespaces.yaml").write_text("namespaces: [\n")
    found = problems_of(workspace)
    assert found[0].startswith("namespaces.yaml: is not valid YAML")


def test_profile_fields_cannot_take_the_profiles_table_columns(workspace: Path) -> None:
    schema = workspace / "schemas" / "loyalty_member.yaml"
    schema.write_text(schema.read_text() + "  - {name: events_in_window, type: long}\n"
                      "  - {name: _batch_date, type: date}\n")
    assert problems_of(workspace) == [
        "schemas/loyalty_member.yaml: fields.events_in_window: 'events_in_window' is a column of the profiles "
        "table; rename the field",
        "schemas/loyalty_member.yaml: fields._batch_date: names starting with '_' are reserved for the "
        "platform's columns",
    ]


def test_reserved_profile_columns_are_the_ones_build_profiles_writes() -> None:
    from cdp.workspace.loader import RESERVED_PROFILE_COLUMNS
    from jobs.build_profiles import EVENTS_IN_WINDOW, LAST_UPDATE

    assert {EVENTS_IN_WINDOW, LAST_UPDATE} <= set(RESERVED_PROFILE_COLUMNS)
