"""`cdp validate` on a corpus of broken copies of the example workspace: exact output, exit code 1.

Every case (tests/unit/workspace_corpus.py) runs through the real entry point, ``cdp.cli.main``, with
the landing and exports roots of the test. Beside the corpus: the billion-laughs file is refused fast
and in little memory, Java-only regexes are accepted, a missing Java is a problem (not a crash),
unreadable files and folders are reported, and nothing unexpected ever becomes a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from workspace_corpus import CASES, LAUGHS, Roots

from cdp.cli import main
from cdp.errors import WorkspaceError
from cdp.workspace import checks
from cdp.workspace.loader import load_workspace
from cdp.workspace.yaml_safe import YamlProblem, parse_yaml


@pytest.fixture()
def roots(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Roots:
    found = Roots(tmp_path / "ws", tmp_path / "landing", tmp_path / "exports", tmp_path / "outside")
    found.outside.mkdir()
    shutil.copytree(repo_root / "examples" / "retail", found.ws)
    monkeypatch.setenv("CDP_LANDING", str(found.landing))
    monkeypatch.setenv("CDP_EXPORTS", str(found.exports))
    monkeypatch.setenv("CDP_LAKE", str(tmp_path / "lake"))
    return found


def expand(line: str, roots: Roots) -> str:
    for name in ("ws", "landing", "exports", "outside"):
        line = line.replace(f"{{{name}}}", str(getattr(roots, name)))
    return line


def validate(roots: Roots, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["validate", str(roots.ws)])
    return code, capsys.readouterr().out.splitlines()


def test_corpus_is_large_and_ids_unique() -> None:
    ids = [case_id for case_id, _, _ in CASES]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("case_id", "edits", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_workspace(case_id: str, edits: list, expected: list[str], roots: Roots,
                          capsys: pytest.CaptureFixture[str]) -> None:
    for edit in edits:
        edit(roots)
    code, lines = validate(roots, capsys)
    want = [expand(line, roots) if line.startswith("{ws}") else f"{roots.ws}/{expand(line, roots)}"
            for line in expected]
    assert (code, lines) == (1, [*want, f"{len(expected)} problem(s) found"])


def test_example_is_valid_under_the_test_roots(roots: Roots, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(roots, capsys)
    assert code == 0, lines
    assert lines[0] == "workspace 'retail' is valid: 4 schemas, 4 datasets, 5 namespaces, 4 audiences, 8 destinations"


def test_billion_laughs_is_refused_fast_in_bounded_memory() -> None:
    # Expanded, the file holds 9**9 (387 million) strings: pydantic took minutes and gigabytes on it.
    assert len(LAUGHS) < 1000
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(YamlProblem, match="expands to more than 100000 values"):
        parse_yaml(LAUGHS)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5, elapsed
    assert peak < 2 * 1024 * 1024, peak


def test_deep_flow_nesting_is_refused_while_scanning() -> None:
    # PyYAML's scanner is quadratic in the flow depth: a 1 MB line of '[' must not get that far.
    started = time.perf_counter()
    with pytest.raises(YamlProblem, match="nesting is deeper than 64 levels"):
        parse_yaml(b"[" * 1_000_000)
    assert time.perf_counter() - started < 0.5


def test_java_regexes_that_python_rejects_are_accepted(roots: Roots, capsys: pytest.CaptureFixture[str]) -> None:
    # \p{Alpha} is Java only (Python's re has no \p); Spark compiles with java.util.regex.
    with pytest.raises(re.error):
        re.compile(r"\p{Alpha}+")
    (roots.ws / "audiences" / "alpha.yaml").write_text(
        "id: alpha\nname: alpha\nrule:\n  any:\n"
        "    - {attribute: first_name, op: regex, value: '^\\p{Alpha}+$'}\n"
        "    - {attribute: email, op: regex, value: '^[a-z]++@example[.]com$'}\n", encoding="utf-8")
    code, lines = validate(roots, capsys)
    assert code == 0, lines


def test_missing_java_is_a_problem_not_a_crash(roots: Roots, tmp_path: Path) -> None:
    # A fresh interpreter: no SparkContext whose JVM could be borrowed, and no cached pattern.
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    result = subprocess.run([sys.executable, "-c", "from cdp.cli import main; raise SystemExit(main(['validate', "
                             f"{str(roots.ws)!r}]))"], capture_output=True, text=True, env=env, check=False)
    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (1, [
        f"{roots.ws}/namespaces.yaml: namespaces.4.pattern: cannot be checked with Java, the dialect Spark uses: "
        f"JAVA_HOME={tmp_path / 'no-java'} has no bin/java; install Java 17 (apt-get install "
        "openjdk-17-jre-headless) or set JAVA_HOME",
        "1 problem(s) found"], "")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop CAP_DAC_OVERRIDE")
def test_unreadable_files_and_folders(roots: Roots) -> None:
    # Root reads any file; the subprocess keeps uid 0 but drops the capabilities that bypass permissions.
    (roots.ws / "audiences" / "gold_members.yaml").chmod(0)
    (roots.ws / "schemas").chmod(0)
    drop = "-dac_override,-dac_read_search"
    try:
        result = subprocess.run(["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-c",
                                 f"from cdp.cli import main; raise SystemExit(main(['validate', {str(roots.ws)!r}]))"],
                                capture_output=True, text=True, check=False)
    finally:
        (roots.ws / "schemas").chmod(0o755)
    assert (result.returncode, result.stdout.splitlines()) == (1, [
        f"{roots.ws}/schemas: cannot be read: Permission denied; give the user running cdp read access",
        f"{roots.ws}/audiences/gold_members.yaml: cannot be read: Permission denied; give the user running cdp read "
        "access or remove the file",
        "2 problem(s) found"]), result.stderr


def test_a_job_loading_the_workspace_gets_the_same_problems(roots: Roots) -> None:
    destination = roots.ws / "destinations" / "marketing_landing.yaml"
    destination.write_text(destination.read_text().replace("path: marketing", "path: ../marketing"))
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(roots.ws)
    assert [str(p) for p in caught.value.problems] == [
        f"destinations/marketing_landing.yaml: path: '../marketing' leaves the exports root ({roots.exports}): it goes "
        "up out of it with '..'; use a folder under the root, or allow it with paths: {allow_outside_exports_root: "
        "true} in workspace.yaml"]
    config = roots.ws / "workspace.yaml"
    config.write_text(config.read_text() + "paths: {allow_outside_exports_root: true}\n")
    assert load_workspace(roots.ws).destinations["marketing_landing"].path == "../marketing"


def test_unreadable_delta_log_is_a_problem(roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "lake" / "datasets" / "crm_profiles" / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / "00000000000000000000.json").write_text("{not json\n")
    code = main(["validate", str(roots.ws), "--lake", str(tmp_path / "lake")])
    assert (code, capsys.readouterr().out.splitlines()) == (1, [
        f"{roots.ws}/schemas/crm_profile.yaml: cannot compare with the table of dataset crm_profiles "
        f"({tmp_path / 'lake' / 'datasets' / 'crm_profiles'}): its Delta log cannot be read (JSONDecodeError: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); repair the table or pass "
        "another --lake",
        "1 problem(s) found"])


def test_an_unexpected_error_is_a_problem_line(roots: Roots, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # No real input is known to crash the checks (the corpus is there for that), so a check that fails
    # the way a bug would is injected: the command must still print one line and exit 1.
    def broken_check(ws: object, ctx: object) -> list[object]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(checks, "CHECKS", (*checks.CHECKS, broken_check))
    code, lines = validate(roots, capsys)
    assert (code, lines) == (1, [
        f"{roots.ws}: unexpected error while checking the workspace: ZeroDivisionError: division by zero (this is a "
        "bug of cdp validate: please report it with the workspace that causes it)",
        "1 problem(s) found"])
