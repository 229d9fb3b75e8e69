"""The whole daily run through Airflow (`airflow dags test`) on a tiny hand-written landing.

Four persons land across four datasets under different identities; one CRM row and two web lines
are bad. The test asserts the exact rows each destination file holds, and what was quarantined.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

RUN_DATE = "2026-11-27"
LOGICAL_DATE = "2026-11-28T00:00:00+00:00"  # its data interval is [2026-11-27, 2026-11-28): run date 2026-11-27
ECID_ANN = "1" * 38
ECID_BOB = "2" * 38

CRM_CSV = """crm_id,email,phone,first_name,last_name,birth_date,country,city,consent_marketing,updated_at
C001,Ann@Example.com,+33 6 12 34 56 78,Ann,Archer,1990-04-01,FR,Paris,true,2026-11-27T08:00:00Z
C002,bob@example.com,(415) 555-0100,Bob,Baker,1985-01-15,US,Austin,false,2026-11-27T09:00:00Z
C003,cat@example.com,,Cat,Cole,,FR,Lyon,true,2026-11-27T10:00:00Z
C004,not-an-email,,Dan,Dale,,DE,Berlin,true,2026-11-27T10:00:00Z
"""

WEB_LINES = [
    {"event_id": "w1", "event_type": "add_to_cart", "timestamp": "2026-11-26T10:00:00Z", "ecid": ECID_BOB,
     "crm_id": "C002", "product_id": "P1"},
    {"event_id": "w2", "event_type": "add_to_cart", "timestamp": "2026-11-27T10:00:00Z", "ecid": ECID_ANN,
     "crm_id": "C001", "product_id": "P2"},
    {"event_id": "w3", "event_type": "purchase", "timestamp": "2026-11-27T11:00:00Z", "ecid": ECID_ANN,
     "revenue": 59.9},
    {"event_id": "w4", "event_type": "checkout", "timestamp": "2026-11-27T12:00:00Z", "ecid": ECID_ANN},
]

EMAIL_LINES = [
    {"event_id": "m1", "event_type": "open", "timestamp": "2026-11-27T06:00:00Z", "email": "cat@example.com",
     "campaign_id": "K1"},
    {"event_id": "m2", "event_type": "open", "timestamp": "2026-11-27T07:00:00Z", "email": "Cat@Example.com",
     "campaign_id": "K2"},
]

HEADER = "crm_id,email,first_name,loyalty_tier,country,membership_status,last_qualification_time"


def write_landing(landing: Path) -> None:
    day = RUN_DATE
    (landing / "crm" / day).mkdir(parents=True)
    (landing / "crm" / day / "crm.csv").write_text(CRM_CSV, encoding="utf-8")
    (landing / "web" / day).mkdir(parents=True)
    lines = [json.dumps(line) for line in WEB_LINES] + ['{"event_id": "w5", "event_type": "page_view"']
    (landing / "web" / day / "web.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (landing / "email" / day).mkdir(parents=True)
    (landing / "email" / day / "email.jsonl").write_text(
        "\n".join(json.dumps(line) for line in EMAIL_LINES) + "\n", encoding="utf-8")
    (landing / "loyalty" / day).mkdir(parents=True)
    table = pa.table({
        "loyalty_id": ["L001", "L002"],
        "email": ["ANN@example.com", "eve@example.com"],
        "tier": ["gold", "platinum"],
        "points": pa.array([1500, 200], pa.int64()),
        "joined_on": pa.array([dt.date(2020, 1, 1), dt.date(2021, 6, 1)], pa.date32()),
        "updated_at": pa.array([dt.datetime(2026, 11, 27, 7, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, landing / "loyalty" / day / "loyalty.parquet")


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("e2e")
    workspace = base / "workspace"
    shutil.copytree(repo_root / "examples" / "retail", workspace)
    # Four-line files: one bad line is 25%; let the batch through so the bad lines are quarantined.
    ws_file = workspace / "workspace.yaml"
    ws_file.write_text(ws_file.read_text().replace("max_rejected_share: 0.10", "max_rejected_share: 0.5"))
    write_landing(base / "landing")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "CDP_WORKSPACE": str(workspace),
        "CDP_LAKE": str(base / "lake"),
        "CDP_LANDING": str(base / "landing"),
        "CDP_EXPORTS": str(base / "exports"),
        "CDP_TASK_RETRIES": "0",
        "CDP_DRIVER_MEMORY": "1g",
        "CDP_SHUFFLE_PARTITIONS": "2",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    result = subprocess.run([airflow, "dags", "test", "cdp_daily", LOGICAL_DATE], env=env,
                            capture_output=True, text=True, check=False)
    (base / "dags_test.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    runs = subprocess.run([airflow, "dags", "list-runs", "cdp_daily", "-o", "json"], env=env,
                          capture_output=True, text=True, check=True)
    # Airflow may print warnings before the JSON document: it is the last line.
    states = [r["state"] for r in json.loads(runs.stdout.strip().splitlines()[-1])]
    assert states == ["success"], f"run states {states}; log: {base / 'dags_test.log'}\n" + (
        result.stdout + result.stderr)[-6000:]
    return {"exports": base / "exports", "lake": base / "lake"}


def read_export(daily_run: dict[str, Path], audience_id: str) -> tuple[str, list[str]]:
    path = daily_run["exports"] / "marketing" / f"marketing_landing_{audience_id}_20261127.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], sorted(lines[1:])


def test_gold_members_file(daily_run: dict[str, Path]) -> None:
    # Ann's CRM and loyalty records merge through her email written two ways; Eve is loyalty-only.
    header, rows = read_export(daily_run, "gold_members")
    assert header == HEADER
    assert rows == [
        ",eve@example.com,,platinum,,realized,2026-11-28T00:00:00Z",
        "C001,Ann@Example.com,Ann,gold,FR,realized,2026-11-28T00:00:00Z",
    ]


def test_cart_abandoners_file(daily_run: dict[str, Path]) -> None:
    # Bob's cookie added to cart while logged in and never bought; Ann bought.
    header, rows = read_export(daily_run, "cart_abandoners")
    assert header == HEADER
    assert rows == ["C002,bob@example.com,Bob,,US,realized,2026-11-28T00:00:00Z"]


def test_french_high_points_file(daily_run: dict[str, Path]) -> None:
    # Country and consent come from the CRM, points from the loyalty programme: one merged profile.
    header, rows = read_export(daily_run, "french_high_points")
    assert header == HEADER
    assert rows == ["C001,Ann@Example.com,Ann,gold,FR,realized,2026-11-28T00:00:00Z"]


def test_bad_records_quarantined_with_reasons(daily_run: dict[str, Path], spark: SparkSession) -> None:
    rows = spark.read.format("delta").load(str(daily_run["lake"] / "quarantine")).collect()
    found = sorted((r["dataset"], Path(r["source_file"]).name, r["row_number"],
                    sorted(x["code"] for x in r["reasons"])) for r in rows)
    assert found == [
        ("crm_profiles", "crm.csv", 5, ["bad_format"]),
        ("web_events", "web.jsonl", 4, ["not_in_enum"]),
        ("web_events", "web.jsonl", 5, ["malformed_record"]),
    ]
