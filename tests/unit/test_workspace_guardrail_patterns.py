"""Identity patterns in the workspace: namespace patterns and blocked patterns must be valid Java regexes."""

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


def test_example_declares_the_ecid_pattern(repo_root: Path) -> None:
    ws = load_workspace(repo_root / "examples" / "retail")
    assert ws.namespaces["ecid"].pattern == "^[0-9]{38}$"
    assert ws.namespaces["email"].pattern is None
    assert ws.config.guardrails.blocked_patterns == []


def test_invalid_regexes_name_the_file_and_key(workspace: Path) -> None:
    namespaces = workspace / "namespaces.yaml"
    namespaces.write_text(namespaces.read_text().replace('pattern: "^[0-9]{38}$"', 'pattern: "^[0-9{38}$"'))
    config = workspace / "workspace.yaml"
    config.write_text(config.read_text() + '  blocked_patterns: ["0+", "(test"]\n')
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(workspace)
    assert [str(p) for p in caught.value.problems] == [
        "namespaces.yaml: namespaces.4.pattern: is not a valid regular expression (Java syntax, which Spark uses): "
        "Unclosed character class near index 9",
        "workspace.yaml: guardrails.blocked_patterns.1: is not a valid regular expression (Java syntax, which Spark "
        "uses): Unclosed group near index 5",
    ]


def test_valid_blocked_patterns_load(workspace: Path) -> None:
    config = workspace / "workspace.yaml"
    config.write_text(config.read_text() + '  blocked_patterns: ["0+", "(?i)test.*"]\n')
    assert load_workspace(workspace).config.guardrails.blocked_patterns == ["0+", "(?i)test.*"]


def test_invalid_namespace_blocked_pattern_names_the_namespace_and_index(workspace: Path) -> None:
    namespaces = workspace / "namespaces.yaml"
    namespaces.write_text(namespaces.read_text().replace(
        "  - code: email\n", '  - code: email\n    blocked_patterns: ["test@.*", "[a-"]\n'))
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(workspace)
    assert [str(p) for p in caught.value.problems] == [
        "namespaces.yaml: namespaces.2.blocked_patterns.1: is not a valid regular expression (Java syntax, which "
        "Spark uses): Illegal character range near index 3"]
