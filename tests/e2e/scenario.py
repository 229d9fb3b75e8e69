"""The three-day scenario of the end-to-end tests: the days, and the hand-written persons' landed files that go
next to the example generator's (see tests/e2e/test_cdp_daily.py for what each day shows)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DAYS = ["2026-11-27", "2026-11-28", "2026-11-29"]
ECID_ANN = "1" * 38
ECID_BOB = "2" * 38
HAND_CRM_IDS = {"C001", "C002", "C003", "C004", "C006"}
HAND_EMAILS = {"ann@example.com", "bob@example.com", "cat@example.com", "eve@example.com"}

CRM_HEADER = "crm_id,email,phone,first_name,last_name,birth_date,country,city,consent_marketing,updated_at\n"
CRM_DAY1 = CRM_HEADER + (
    "C001,Ann@Example.com,+33 6 12 34 56 78,Ann,Archer,1990-04-01,FR,Paris,true,2026-11-27T08:00:00Z\n"
    "C002,bob@example.com,(415) 555-0100,Bob,Baker,1985-01-15,US,Austin,false,2026-11-27T09:00:00Z\n"
    "C003,cat@example.com,,Cat,Cole,,FR,Lyon,true,2026-11-27T10:00:00Z\n"
    "C004,not-an-email,,Dan,Dale,,DE,Berlin,true,2026-11-27T10:00:00Z\n")
# Day 3: Fay's CRM record carries Bob's e-mail (the newer link wins).
CRM_DAY3 = CRM_HEADER + "C006,bob@example.com,06 11 22 33 44,Fay,Fox,,US,Denver,true,2026-11-29T09:00:00Z\n"

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


def loyalty_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({
        "loyalty_id": [r["loyalty_id"] for r in rows],
        "email": [r["email"] for r in rows],
        "tier": [r["tier"] for r in rows],
        "points": pa.array([r["points"] for r in rows], pa.int64()),
        "joined_on": pa.array([r["joined_on"] for r in rows], pa.date32()),
        "updated_at": pa.array([r["updated_at"] for r in rows], pa.timestamp("us", tz="UTC")),
    })


def write_hand_written(landing: Path) -> None:
    """The hand-written persons' files, next to the generated ones in each day's folders."""
    day1, day2, day3 = DAYS
    for folder in ("crm", "web", "email", "loyalty"):
        for day in DAYS:
            (landing / folder / day).mkdir(parents=True, exist_ok=True)
    (landing / "crm" / day1 / "crm.csv").write_text(CRM_DAY1, encoding="utf-8")
    lines = [json.dumps(line) for line in WEB_LINES] + ['{"event_id": "w5", "event_type": "page_view"']
    (landing / "web" / day1 / "web.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (landing / "email" / day1 / "email.jsonl").write_text(
        "\n".join(json.dumps(line) for line in EMAIL_LINES) + "\n", encoding="utf-8")
    seven = dt.datetime(2026, 11, 27, 7, tzinfo=dt.UTC)
    pq.write_table(loyalty_table([
        {"loyalty_id": "L001", "email": "ANN@example.com", "tier": "gold", "points": 1500,
         "joined_on": dt.date(2020, 1, 1), "updated_at": seven},
        {"loyalty_id": "L002", "email": "eve@example.com", "tier": "platinum", "points": 200,
         "joined_on": dt.date(2021, 6, 1), "updated_at": seven},
    ]), landing / "loyalty" / day1 / "loyalty.parquet")
    # Day 2: Eve's loyalty account now carries Cat's e-mail (and more points): Cat and Eve are one person.
    pq.write_table(loyalty_table([
        {"loyalty_id": "L002", "email": "Cat@Example.com", "tier": "platinum", "points": 1800,
         "joined_on": dt.date(2021, 6, 1), "updated_at": dt.datetime(2026, 11, 28, 7, tzinfo=dt.UTC)},
    ]), landing / "loyalty" / day2 / "loyalty.parquet")
    (landing / "crm" / day3 / "crm.csv").write_text(CRM_DAY3, encoding="utf-8")
