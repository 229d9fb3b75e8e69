"""Destination models: the union on type, headers, compression defaults, file names; the one rule walk."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from cdp.settings import Settings
from cdp.workspace.file_names import render_file_name
from cdp.workspace.loader import load_workspace
from cdp.workspace.models import AudienceSpec, LocalDestination, S3Destination


def settings(tmp_path: Path) -> Settings:
    return Settings(workspace="", lake=str(tmp_path / "lake"), landing=str(tmp_path / "landing"),
                    exports=str(tmp_path / "exports"))


def test_example_destination_defaults(repo_root: Path, tmp_path: Path) -> None:
    dest = load_workspace(repo_root / "examples" / "retail", settings(tmp_path)).destinations["marketing_landing"]
    assert isinstance(dest, LocalDestination)
    assert (dest.format, dest.effective_compression, dest.extension, dest.layout, dest.export) == (
        "csv", "none", ".csv", "per_audience", "full")
    assert (dest.csv.delimiter, dest.csv.quote, dest.csv.escape, dest.csv.empty_value) == (",", '"', '"', '""')
    assert [m.header for m in dest.mapping] == ["crm_id", "email", "first_name", "loyalty_tier", "country"]
    assert dest.split_rows == 5_000_000 and dest.connection is None


def test_headers_of_hashed_and_nested_sources(repo_root: Path, tmp_path: Path) -> None:
    ws_root = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", ws_root)
    (ws_root / "destinations" / "partner.yaml").write_text(
        "name: partner\ntype: s3\nconnection: partner_s3\nbucket: partner-bucket\npath: cdp/{date}\n"
        "format: parquet\naudiences: [gold_members]\nmapping:\n"
        "  - {source: 'identity:email', hash: sha256}\n"
        "  - {source: 'identity:phone', hash: sha256}\n"
        "  - {source: email, hash: sha256}\n"
        "  - {source: profile_id}\n"
        "  - {source: tier, name: loyalty.tier, required: true}\n"
        "deduplication: {attributes: [email, tier]}\n", encoding="utf-8")
    dest = load_workspace(ws_root, settings(tmp_path)).destinations["partner"]
    assert isinstance(dest, S3Destination)
    assert [m.header for m in dest.mapping] == ["email_lc_sha256", "phone_sha256", "email_sha256", "profile_id",
                                                "loyalty_tier"]
    assert [m.namespace for m in dest.mapping] == ["email", "phone", None, None, None]
    assert (dest.effective_compression, dest.extension) == ("snappy", ".parquet")


@pytest.mark.parametrize(("template", "expected"), [
    ("{destination}_{audience_id}_{date}", "d_gold_members_20261127.csv.gz"),
    ("{audience_name}-{datetime}-{timestamp}-{destination}-{audience_id}",
     "gold-platinum-members-20261127T063005-1795761005-d-gold_members.csv.gz"),
])
def test_render_file_name(template: str, expected: str) -> None:
    dest = LocalDestination.model_validate({"name": "d", "type": "local", "path": "", "audiences": ["gold_members"],
                                            "mapping": [{"source": "profile_id"}], "compression": "gzip",
                                            "file_name": template})
    audience = AudienceSpec.model_validate({"id": "gold_members", "name": "Gold & Platinum members",
                                            "rule": {"attribute": "tier", "op": "exists"}})
    when = dt.datetime(2026, 11, 27, 6, 30, 5, tzinfo=dt.UTC)
    assert render_file_name(dest, audience.id, audience.name, when) == expected


def test_rule_walk_gives_every_node_with_its_path(repo_root: Path, tmp_path: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail", settings(tmp_path))
    walked = [(path, node.events.event_type if node.events else None)
              for path, node in ws.audiences["cart_abandoners"].rule.walk()]
    assert walked == [("rule", None), ("rule.all.0", "add_to_cart"), ("rule.all.1", None),
                      ("rule.all.1.not", "purchase")]


def test_combined_layout_needs_no_audience_id(repo_root: Path, tmp_path: Path) -> None:
    ws_root = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", ws_root)
    (ws_root / "destinations" / "all_in_one.yaml").write_text(
        "name: all_in_one\ntype: local\npath: combined\nlayout: combined\nfile_name: '{destination}_{date}'\n"
        "audiences: [gold_members, cart_abandoners]\nmapping:\n  - {source: profile_id}\n", encoding="utf-8")
    dest = load_workspace(ws_root, settings(tmp_path)).destinations["all_in_one"]
    assert (dest.layout, dest.file_name) == ("combined", "{destination}_{date}")
