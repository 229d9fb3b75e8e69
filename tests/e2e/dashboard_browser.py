"""The Activation view in a real browser: Debian's headless Chromium (driven by Selenium through Debian's
chromium-driver) opens the view served by the e2e stack's `airflow api-server` over the DAG runs of
``daily_runs`` (day 1 by REST, a dry run, the backfill of days 2-3 and day 2 again, see conftest.py) and
reads every figure it shows; they must equal the lake's tables, recomputed here with Spark from the big tables
where there is one (memberships, identity map) and from the metrics tables otherwise. Screenshots of the view,
alone and inside the Airflow UI (its navigation entry), are saved under the test's tmp_path."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scenario import DAYS
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

log = logging.getLogger(__name__)

pytestmark = pytest.mark.timeout(5400)  # the DAG runs of daily_runs, when this module runs them first
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture()
def browser() -> Iterator[webdriver.Chrome]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("Debian's chromium and chromium-driver are needed (make setup installs them with apt)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The machine's network is closed: Chromium's own background calls (updates, sync, QUIC probes, first-run
    # pages) would be refused or hang, so they are off; only loopback pages are loaded.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,2600",
                "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # The Airflow UI's bundles take a while to load on a busy 2-core machine (a readiness limit, not a timing).
    driver.set_page_load_timeout(180)
    try:
        yield driver
    finally:
        driver.quit()


def expected_figures(spark: SparkSession, lake: Path) -> dict[str, str]:
    """data-figure key -> the text the view must show, computed with Spark from the lake's tables."""
    def table(name: str) -> Any:
        return spark.read.format("delta").load(str(lake / name))

    last = DAYS[-1]
    out: dict[str, str] = {}
    members = table("audience_membership").where(F.col("run_date") == last)
    for r in members.groupBy("audience_id").agg(
            F.sum(F.col("status").isin("realized", "existing").cast("long")).alias("size"),
            F.sum((F.col("status") == "realized").cast("long")).alias("realized"),
            F.sum(((F.col("status") == "exited") & (F.col("status_since") == last)).cast("long")).alias("exited"),
    ).collect():
        for k in ("size", "realized", "exited"):
            out[f"audience.{r['audience_id']}.{k}"] = f"{r[k]:,}"
    for r in table("audience_catalog").where(F.col("run_date") == last).collect():
        out[f"audience.{r['audience_id']}.evaluation"] = r["evaluation"]
    for r in table("destination_metrics").collect():
        key = f"destination.{r['destination']}.{r['run_date']}"
        for k in ("received", "activated", "failed", "files", "rows", "bytes"):
            out[f"{key}.{k}"] = f"{r[k]:,}"
        out[f"{key}.status"] = r["status"]
        out.update({f"{key}.excluded.{reason}": f"{reason} {n:,}" for reason, n in r["excluded"].items() if n})
    for r in table("batch_ledger").groupBy("dataset", "batch_date").agg(
            F.count(F.lit(1)).alias("files"), F.sum("rows_read").alias("rows_read"),
            F.sum("rows_quarantined").alias("rows_quarantined")).collect():
        key = f"ingestion.{r['dataset']}.{r['batch_date']}"
        out.update({f"{key}.{k}": f"{r[k]:,}" for k in ("files", "rows_read", "rows_quarantined")})
    for day in DAYS:
        profiles = table("identity_map").where(F.col("run_date") == day).select("profile_id").distinct().count()
        out[f"identity.{day}.profiles"] = f"{profiles:,}"
        dropped = table("identity_audit").where((F.col("run_date") == day) & (F.col("reason") == "unique_namespace"))
        out[f"identity.{day}.links_dropped"] = f"{dropped.count():,}"
    failed = table("quality_results").where(~F.col("success") & F.col("run_date").isin(*DAYS)).count()
    out["quality.failed"] = str(failed)
    return out


@pytest.fixture()
def airflow_ui(airflow_stack: Any) -> str:
    """The e2e stack's API server, which serves the Airflow UI and the plugin's app."""
    return str(airflow_stack.base_url)


def test_the_activation_view_shows_the_tables_figures(daily_runs: dict[str, Any], airflow_ui: str, airflow_stack: Any,
                                                      browser: webdriver.Chrome, spark: SparkSession,
                                                      tmp_path: Path) -> None:
    runs = [daily_runs["runs"].get("day1", {}), *daily_runs.get("backfill", []), *daily_runs.get("rerun", [])]
    assert [r.get("state") for r in runs] == ["success"] * 4, (
        f"the DAG runs did not all succeed: {[(r.get('run_date'), r.get('state')) for r in runs]} "
        "(see test_cdp_daily.py)")
    expected = expected_figures(spark, daily_runs["lake"])
    # Anonymous, the view is refused; logged in (the stack's admin: the JWT the UI keeps in its cookie, as the
    # login page sets it), it is shown.
    browser.get(f"{airflow_ui}/cdp/activation/")
    assert "Not authenticated" in browser.page_source and not browser.find_elements(By.TAG_NAME, "h1")
    browser.add_cookie({"name": "_token", "value": airflow_stack.stack.token(), "path": "/"})
    browser.get(f"{airflow_ui}/cdp/activation/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Activation"
    shown = {e.get_attribute("data-figure"): e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-figure]")}
    browser.save_screenshot(str(tmp_path / "activation.png"))
    log.info("screenshot of the Activation view: %s", tmp_path / "activation.png")
    # Every figure the tables have is shown, with the same value.
    assert {k: shown.get(k) for k in expected} == expected
    # The day-2 merge and the day-3 split are visible as such, and the local destination delivered every day.
    assert shown[f"identity.{DAYS[2]}.links_dropped"] != "0"
    assert all(f"destination.marketing_landing.{day}.status" in shown for day in DAYS)
    # No e-mail address is shown: the quarantine samples are masked.
    assert "@example.com" not in browser.page_source.lower()

    # The navigation entry of the Airflow UI opens the same view inside the UI, for the same user.
    browser.get(f"{airflow_ui}/plugin/activation")
    frame = WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
    assert frame.get_attribute("src").rstrip("/").endswith("/cdp/activation")
    browser.save_screenshot(str(tmp_path / "activation_in_airflow_ui.png"))
    browser.switch_to.frame(frame)
    WebDriverWait(browser, 30).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Activation"))
    inner = {e.get_attribute("data-figure"): e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-figure]")}
    assert {k: inner.get(k) for k in expected} == expected
