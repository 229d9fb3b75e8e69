"""Validation of the audience rule language: every problem names the file, the rule path and what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp.errors import WorkspaceError
from cdp.workspace.loader import load_workspace
from cdp.workspace.models import Window

WEB_AND_EMAIL_FIELDS = ("campaign_id, crm_id, ecid, email, event_id, event_type, page_url, product_id, revenue, "
                        "timestamp")


@pytest.fixture()
def workspace(tmp_path: Path, repo_root: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", dest)
    # Nested attributes for the path checks: an object, an array and a map on the CRM schema.
    schema = dest / "schemas" / "crm_profile.yaml"
    schema.write_text(schema.read_text() + (
        "  - {name: address, type: object, fields: [{name: zip, type: string}, {name: floor, type: integer}]}\n"
        "  - {name: tags, type: array, items: {name: tag, type: string}}\n"
        "  - {name: scores, type: map, values: {name: score, type: double}}\n"))
    return dest


def write_audience(root: Path, audience_id: str, rule: str) -> None:
    (root / "audiences" / f"{audience_id}.yaml").write_text(f"id: {audience_id}\nname: {audience_id}\nrule:\n{rule}")


def problems_of(root: Path) -> list[str]:
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(root)
    return [str(p) for p in caught.value.problems]


def test_full_language_loads(workspace: Path) -> None:
    write_audience(workspace, "big_spenders", """  all:
    - events:
        type: purchase
        where: [{field: revenue, op: ">", value: 10}, {field: product_id, op: starts_with, value: "SKU"}]
        at_least: 1
        within: {between_days_ago: [30, 90]}
    - events: {type: purchase, aggregate: {fn: sum, field: revenue, op: ">=", value: 100}, within: {today: true}}
    - events: {type: product_view, aggregate: {fn: count_distinct, field: product_id, op: ">", value: 2},
               within: {from: 2026-01-01, to: 2026-01-31}}
    - last_event: {type: open, dataset: email_events, less_than_days_ago: 30}
    - not: {audience: gold_members}
    - {attribute: address.zip, op: starts_with, value: "75"}
    - {attribute: tags, op: "=", value: vip, match: all}
    - {attribute: scores, key: churn, op: ">", value: 0.5}
""")
    ws = load_workspace(workspace)
    assert ws.audiences["big_spenders"].rule.all is not None


def test_event_field_and_aggregate_problems(workspace: Path) -> None:
    write_audience(workspace, "bad", """  any:
    - events: {type: purchase, where: [{field: colour, op: "=", value: red}], at_least: 1, within: {last_days: 7}}
    - events: {type: purchase, dataset: web_events, where: [{field: revenue, op: ">", value: lots}], at_least: 1,
               within: {last_days: 7}}
    - events: {type: purchase, aggregate: {fn: sum, field: product_id, op: ">", value: 1}, within: {last_days: 7}}
    - events: {type: purchase, where: [{field: revenue, op: contains, value: "1"}], exactly: 1, within: {today: true}}
    - last_event: {type: checkout, more_than_days_ago: 3}
    - sequence: {first: {type: add_to_cart}, then: {type: buy, where: [{field: price, op: ">", value: 1}]},
                 within_hours: 24, within: {last_days: 1}}
""")
    assert problems_of(workspace) == [
        f"audiences/bad.yaml: rule.any.0.events.where.0.field: unknown event field 'colour' (fields: "
        f"{WEB_AND_EMAIL_FIELDS})",
        "audiences/bad.yaml: rule.any.1.events.where.0.value: event field 'revenue' is double; the value must be a "
        "number",
        "audiences/bad.yaml: rule.any.2.events.aggregate.fn: 'sum' needs a numeric event field; 'product_id' is "
        "string",
        "audiences/bad.yaml: rule.any.3.events.where.0.op: 'contains' needs a string event field; 'revenue' is double",
        "audiences/bad.yaml: rule.any.4.last_event.type: unknown event type 'checkout' (declared: add_to_cart, click, "
        "open, page_view, product_view, purchase, sent, unsubscribe)",
        "audiences/bad.yaml: rule.any.5.sequence.then.type: unknown event type 'buy' (declared: add_to_cart, click, "
        "open, page_view, product_view, purchase, sent, unsubscribe)",
        f"audiences/bad.yaml: rule.any.5.sequence.then.where.0.field: unknown event field 'price' (fields: "
        f"{WEB_AND_EMAIL_FIELDS})",
    ]


def test_nested_attribute_problems(workspace: Path) -> None:
    write_audience(workspace, "bad", """  any:
    - {attribute: address.street, op: exists}
    - {attribute: country.code, op: exists}
    - {attribute: address.floor, op: starts_with, value: "1"}
    - {attribute: scores, op: ">", value: 1}
    - {attribute: country, op: "=", value: FR, match: any}
    - {attribute: tags, op: "=", value: vip, key: a}
""")
    assert problems_of(workspace) == [
        "audiences/bad.yaml: rule.any.0.attribute: unknown attribute 'address.street': 'address' is object with "
        "fields zip, floor",
        "audiences/bad.yaml: rule.any.1.attribute: unknown attribute 'country.code': 'country' is string",
        "audiences/bad.yaml: rule.any.2.op: 'starts_with' needs a string attribute; 'address.floor' is integer",
        "audiences/bad.yaml: rule.any.3.key: attribute 'scores' is a map: '>' needs 'key'",
        "audiences/bad.yaml: rule.any.4.match: 'match' applies to an array attribute; 'country' is string",
        "audiences/bad.yaml: rule.any.5.key: 'key' applies to a map attribute; 'tags' is array",
    ]


def test_unknown_audience_and_cycle(workspace: Path) -> None:
    write_audience(workspace, "a_one", "  all:\n    - audience: b_two\n    - {attribute: country, op: exists}\n")
    write_audience(workspace, "b_two", "  not: {audience: a_one}\n")
    write_audience(workspace, "c_three", "  audience: nobody\n")
    assert problems_of(workspace) == [
        "audiences/c_three.yaml: rule.audience: unknown audience 'nobody' (defined: a_one, b_two, c_three, "
        "cart_abandoners, engaged_readers, french_high_points, gold_members)",
        "audiences/a_one.yaml: rule: audiences form a cycle: a_one -> b_two -> a_one",
    ]


def test_window_forms_and_bounds() -> None:
    import datetime as dt

    day = dt.date(2026, 3, 31)
    assert Window(last_days=7).bounds(day) == (dt.date(2026, 3, 25), day)
    assert Window.model_validate({"between_days_ago": [30, 90]}).bounds(day) == (dt.date(2025, 12, 31),
                                                                                   dt.date(2026, 3, 1))
    assert Window(today=True).bounds(day) == (day, day)
    # An absolute window never reaches past the run date (a backfill sees what that day saw).
    assert Window.model_validate({"from": "2026-03-01", "to": "2026-04-30"}).bounds(day) == (dt.date(2026, 3, 1), day)
    assert Window.model_validate({"from": "2026-03-01"}).bounds(day) == (dt.date(2026, 3, 1), day)
    for bad, message in [({"last_days": 7, "today": True}, "exactly one of"),
                         ({"between_days_ago": [90, 30]}, "0 <= a <= b"),
                         ({"to": "2026-01-01"}, "'to' needs 'from'"),
                         ({"today": False}, "'today' can only be true")]:
        with pytest.raises(ValueError, match=message):
            Window.model_validate(bad)
