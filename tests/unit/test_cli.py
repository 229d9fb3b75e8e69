"""The cdp command as a data engineer runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdp.cli import main
from cdp.data_dictionary import render_data_dictionary


def test_validate_example_workspace(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(repo_root / "examples" / "retail")]) == 0
    assert capsys.readouterr().out == (
        "workspace 'retail' is valid: 4 schemas, 4 datasets, 5 namespaces, 4 audiences, 8 destinations\n"
        "audience cart_abandoners: batch only (event window of 7 days is over 24 hours)\n"
        "audience engaged_readers: batch only (event window of 14 days is over 24 hours)\n"
        "audience french_high_points: streaming-eligible (attribute conditions only)\n"
        "audience gold_members: streaming-eligible (attribute conditions only)\n")


def test_a_reader_that_goes_away_gets_no_traceback(repo_root: Path) -> None:
    """`cdp validate ... | head -1`: the pipe closes before cdp writes (here: before it even starts)."""
    process = subprocess.Popen([sys.executable, "-m", "cdp.cli", "validate", str(repo_root / "examples" / "retail")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=repo_root)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert stderr == ""


def test_validate_lists_every_problem_and_fails(tmp_path: Path, repo_root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(repo_root / "examples" / "retail", ws)
    dataset = ws / "datasets" / "crm_profiles.yaml"
    dataset.write_text(dataset.read_text().replace("profile_enabled: true", "profile_enabeld: true"))
    dest = ws / "destinations" / "marketing_landing.yaml"
    dest.write_text(dest.read_text().replace("cart_abandoners,", "cart_abandonners,"))
    assert main(["validate", str(ws)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{ws}/datasets/crm_profiles.yaml: profile_enabeld: unknown key",
        f"{ws}/destinations/marketing_landing.yaml: audiences.1: audience 'cart_abandonners' is not defined",
        "2 problem(s) found",
    ]


def test_data_dictionary_is_current(repo_root: Path) -> None:
    """docs/data_dictionary.md is generated from cdp/lake.py; regenerate with `make docs`."""
    assert (repo_root / "docs" / "data_dictionary.md").read_text(encoding="utf-8") == render_data_dictionary()
