"""GX Data Docs of the quality gates: the site a gate run writes under the lake (its index lists the suites, a failed
expectation's page shows hashed samples and never an e-mail), its retention, and how the Activation view links to
it and serves it (read-only, nothing outside the folder, behind the view's authentication)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import shutil
from pathlib import Path

import great_expectations.expectations as gxe
import pytest
from pyspark.sql import SparkSession

from cdp.quality import Suite, validate_suites
from cdp.quality_docs import DocsTarget, docs_folder, docs_target, site_file

DAY = dt.date(2026, 11, 27)
EMAILS = ["ann@example.com", "bob@example.org", "chloe.martin@example.net"]


def sha12(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def text_of(html: str) -> str:
    """What a reader sees of a page: its text without tags and scripts, spaces collapsed."""
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def index_rows(folder: Path) -> list[tuple[str, str, str]]:
    """(run name, suite, status) of each row of the index page: GX embeds them as the data of its table."""
    html = (folder / "index.html").read_text()
    return sorted(re.findall(r"'run_name': '([^']+)'.*?'_expectation_suite_name_sort': '([^']+)'.*?"
                             r"'_validation_success_text': '(\w+)'", html))


def gate_suites(spark: SparkSession) -> list[Suite]:
    """An identity gate over e-mails (hashed samples) and a gate of platform-built descriptions (plain)."""
    emails = spark.createDataFrame([(e, "p1") for e in EMAILS] + [(EMAILS[0], "p2")],
                                   "email string, profile_id string")
    problems = spark.createDataFrame([("crm.csv: rows_read 4 != rows_valid 2 + rows_quarantined 1",)],
                                     "count_problem string")
    return [
        Suite("identity_emails", emails, [
            gxe.ExpectColumnValuesToBeUnique(column="email"),
            gxe.ExpectColumnValuesToBeInSet(column="email", value_set=["nobody@example.com"]),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["email", "profile_id"]),
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
        ]),
        Suite("crm_files", problems, [gxe.ExpectColumnValuesToBeNull(column="count_problem")], samples="plain"),
    ]


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake whose Data Docs hold one gate run (stage identities, run date DAY) of the two suites."""
    root = tmp_path_factory.mktemp("docs") / "lake"
    folder = docs_folder(str(root))
    assert folder == root / "quality_docs"
    outcomes = validate_suites(gate_suites(spark), DocsTarget(str(folder), DAY, "identities"))
    assert [(o.suite, o.success) for o in outcomes if not o.success] == [
        ("identity_emails", False), ("identity_emails", False), ("crm_files", False)]
    return root


def page(lake: Path, suite: str, run: str = "2026-11-27_identities") -> str:
    folder = lake / "quality_docs" / "validations" / suite / run
    (file,) = folder.glob("*/*.html")
    return file.read_text()


def test_the_index_lists_the_gate_runs_suites(lake: Path) -> None:
    assert index_rows(lake / "quality_docs") == [
        ("2026-11-27_identities", "crm_files", "Failed"), ("2026-11-27_identities", "identity_emails", "Failed")]


def test_a_failed_expectation_shows_hashed_samples_and_no_e_mail(lake: Path) -> None:
    shown = text_of(page(lake, "identity_emails"))
    assert "Status: Failed" in shown and "Run Name 2026-11-27_identities" in shown
    # Not unique: the repeated e-mail twice; not in the set: every distinct e-mail, each by its hash.
    assert f"values must be unique. 2 unexpected values found. 50% of 4 total rows. Unexpected Value Count " \
           f"sha256_12:{sha12(EMAILS[0])} 2" in shown
    for email in EMAILS:
        assert f"sha256_12:{sha12(email)}" in shown
    # No e-mail in any file of the folder: pages, the stored results and suites GX builds them from.
    for file in (lake / "quality_docs").rglob("*"):
        if file.is_file() and file.suffix in (".html", ".json"):
            content = file.read_text()
            assert not [e for e in EMAILS if e in content], file


def test_a_plain_suite_shows_its_descriptions(lake: Path) -> None:
    shown = text_of(page(lake, "crm_files"))
    assert "crm.csv: rows_read 4 != rows_valid 2 + rows_quarantined 1" in shown
    assert "sha256_12:" not in shown


def test_gate_runs_older_than_the_retention_leave_the_site(spark: SparkSession, lake: Path, tmp_path: Path) -> None:
    folder = tmp_path / "quality_docs"
    shutil.copytree(lake / "quality_docs", folder)
    later = DAY + dt.timedelta(days=31)
    one = Suite("profiles", spark.createDataFrame([("p1",)], "profile_id string"),
                [gxe.ExpectColumnValuesToBeUnique(column="profile_id")])
    validate_suites([one], DocsTarget(str(folder), later, "profiles", keep_days=30))
    assert index_rows(folder) == [("2026-12-28_profiles", "profiles", "Success")]
    assert [p.relative_to(folder).parts[:3] for p in sorted(folder.glob("validations/*/*"))] == [
        ("validations", "profiles", "2026-12-28_profiles")]
    assert [p.relative_to(folder).parts[:4] for p in sorted(folder.glob(".store/validations/*/*"))] == [
        (".store", "validations", "profiles", "2026-12-28_profiles")]


def test_a_lake_on_s3_gets_no_docs_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.quality_docs"):
        assert docs_target("s3a://bucket/lake", DAY, "ingest") is None
    assert [r.getMessage() for r in caplog.records] == [
        "GX Data Docs not built for stage 'ingest': the lake s3a://bucket/lake is not on this machine's file "
        "system, and the Activation view serves them from a local lake only (the results are in quality_results)"]
    assert docs_folder("file:///data/lake") == Path("/data/lake/quality_docs")


def test_site_file_serves_only_files_inside_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "lake" / "quality_docs"
    (folder / "validations").mkdir(parents=True)
    (folder / ".store").mkdir()
    (folder / "index.html").write_text("index")
    (folder / "validations" / "a.html").write_text("a")
    (folder / ".store" / "r.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("secret")
    (folder / "validations" / "out.html").symlink_to(tmp_path / "secret.txt")
    (folder / "validations" / "in.html").symlink_to(folder / "index.html")
    assert site_file(folder, "") == site_file(folder, "index.html") == (folder / "index.html").resolve()
    assert site_file(folder, "validations/a.html") == (folder / "validations" / "a.html").resolve()
    assert site_file(folder, "validations/in.html") == (folder / "index.html").resolve()
    for refused in ("../secret.txt", "validations/../../secret.txt", "/etc/passwd", f"/{tmp_path}/secret.txt",
                    "validations/out.html", ".store/r.json", "validations", "validations/", "missing.html",
                    "validations\\a.html"):
        assert site_file(folder, refused) is None, refused
    assert site_file(None, "index.html") is None


def test_the_view_links_to_the_docs_and_serves_them_read_only(lake: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from cdp_provider.dashboard.activation_app import VIEW_ACCESS, create_app
    from fastapi.testclient import TestClient

    (lake / "quality_docs" / "validations" / "outside.html").unlink(missing_ok=True)
    (tmp_path / "secret.txt").write_text("secret")
    (lake / "quality_docs" / "validations" / "outside.html").symlink_to(tmp_path / "secret.txt")
    monkeypatch.setenv("CDP_LAKE", str(lake))
    app = create_app()
    anonymous = TestClient(app).get("/quality-docs/index.html")
    assert (anonymous.status_code, anonymous.json()) == (401, {"detail": "Not authenticated"})
    app.dependency_overrides[VIEW_ACCESS] = lambda: None  # a user the auth manager lets see the website
    client = TestClient(app)

    view = client.get("/").text
    assert ('Quality <span class="muted">0 expectation result(s), <span data-figure="quality.failed" class="ok">0'
            '</span> failed</span> <a id="quality-docs" href="quality-docs/" target="_blank" rel="noopener">Great '
            'Expectations Data Docs</a></h2>') in view
    index = client.get("/quality-docs/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "connect-src" not in index.headers["content-security-policy"]  # falls back to default-src 'none'
    assert index.headers["content-security-policy"].startswith("default-src 'none';")
    assert "'_expectation_suite_name_sort': 'identity_emails'" in index.text
    link = re.search(r"'_table_row_link_path': '(validations/identity_emails/[^']+)'", index.text)
    assert link is not None
    shown = client.get(f"/quality-docs/{link.group(1)}")
    assert shown.status_code == 200 and f"sha256_12:{sha12(EMAILS[1])}" in shown.text
    assert client.get("/quality-docs/static/styles/data_docs_default_styles.css").headers[
        "content-type"].startswith("text/css")

    stored = next((lake / "quality_docs" / ".store" / "validations").rglob("*.json")).relative_to(lake / "quality_docs")
    for refused in ("/quality-docs/%2e%2e/%2e%2e/etc/passwd", "/quality-docs/..%2f..%2fetc%2fpasswd",
                    "/quality-docs//etc/passwd", "/quality-docs/%2Fetc%2Fpasswd",
                    f"/quality-docs/{stored.as_posix()}", "/quality-docs/.lock",
                    "/quality-docs/validations/outside.html", "/quality-docs/missing.html"):
        answer = client.get(refused)
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"}), refused
    (lake / "quality_docs" / "validations" / "outside.html").unlink()
