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


def test_compiled_patterns_are_remembered_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task loads the workspace: the second process finds Java's verdicts in the cache file, without a JVM."""
    from cdp.workspace import java_patterns

    monkeypatch.setenv("CDP_CACHE_DIR", str(tmp_path / "cache"))
    # No SparkContext in reach: the first check starts a JVM of its own, as a Connect client's task would.
    monkeypatch.setattr(java_patterns, "_spark_jvm", lambda: None)
    monkeypatch.setattr(java_patterns, "_cache", {})
    wanted = [("regex", "^[0-9]{38}$"), ("regex", "(open"), ("datetime", "yyyy-MM-dd")]
    first = java_patterns.check_patterns(wanted)
    assert first == {("regex", "^[0-9]{38}$"): None, ("regex", "(open"): "Unclosed group near index 5",
                     ("datetime", "yyyy-MM-dd"): None}
    stored = java_patterns.cache_file()
    assert stored is not None and stored.is_file()

    # A new process: nothing in memory, and a JVM start would fail the test.
    monkeypatch.setattr(java_patterns, "_cache", {})

    def no_jvm(_todo: object) -> None:
        raise AssertionError("a JVM was started although every pattern is in the cache file")

    monkeypatch.setattr(java_patterns, "_launch_and_compile", no_jvm)
    assert java_patterns.check_patterns(wanted) == first
    # A pattern never seen still needs Java.
    with pytest.raises(AssertionError, match="a JVM was started"):
        java_patterns.check_patterns([("regex", "[a-z]+")])
