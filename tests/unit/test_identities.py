"""Normalisation of identity values: E.164 phones, lower-cased e-mails, blocked values counted per reason."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from cdp.identities import e164, transform_normalize_values
from cdp.workspace.models import Namespace
from jobs.resolve_identities import dropped_metrics, transform_stable_profile_ids


def test_e164_with_and_without_a_default_region() -> None:
    assert e164("+33 6 12 34 56 78", None) == ("+33612345678", None)
    assert e164(" 06.12.34.56.78 ", "FR") == ("+33612345678", None)
    assert e164("(415) 555-2671", "US") == ("+14155552671", None)
    assert e164("06 12 34 56 78", None) == (None, "invalid_phone")  # no country code, no region
    assert e164("+33 (6) 12-34", "FR") == (None, "invalid_phone")  # too short
    assert e164("call me", "FR") == (None, "invalid_phone")
    assert e164("  ", "FR") == (None, "empty")


def test_normalize_distinct_values_with_blocked_values_and_patterns(spark: SparkSession) -> None:
    namespaces = {
        "phone": Namespace(code="phone", type="phone", default_region="FR", blocked_values=["+33600000000"]),
        "email": Namespace(code="email", type="email", blocked_values=["Test@Test.com"],
                           blocked_patterns=["@example\\.com$"]),
        "ecid": Namespace(code="ecid", type="cookie"),
    }
    values = spark.createDataFrame([
        ("phone", "06 12 34 56 78"), ("phone", "+33 6 00 00 00 00"), ("phone", "123"),
        ("email", " Ann@X.com"), ("email", "TEST@test.com "), ("email", "bob@example.com"), ("email", " "),
        ("ecid", " K1 "),
    ], "namespace string, raw string")
    got = transform_normalize_values(values, namespaces)
    assert sorted(tuple(r) for r in got.collect()) == sorted([
        ("phone", "06 12 34 56 78", "+33612345678", None),
        ("phone", "+33 6 00 00 00 00", None, "blocked_value"),
        ("phone", "123", None, "invalid_phone"),
        ("email", " Ann@X.com", "ann@x.com", None),
        ("email", "TEST@test.com ", None, "blocked_value"),
        ("email", "bob@example.com", None, "blocked_pattern"),
        ("email", " ", None, "empty"),
        ("ecid", " K1 ", "K1", None),
    ])
    assert dropped_metrics(got) == {"dropped.phone.blocked_value": 1, "dropped.phone.invalid_phone": 1,
                                    "dropped.email.blocked_value": 1, "dropped.email.blocked_pattern": 1,
                                    "dropped.email.empty": 1}


def test_stable_profile_ids_unchanged_merge_and_split(spark: SparkSession) -> None:
    d1, d2, d3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
    previous = spark.createDataFrame([
        ("crm_id", "A", "pA", d1), ("email", "a@x", "pA", d2),  # unchanged
        ("crm_id", "B", "pB", d2), ("crm_id", "C", "pC", d1),  # B and C merge: pC is older
        ("email", "s1", "pS", d1), ("ecid", "s2", "pS", d2), ("ecid", "s3", "pS", d2),  # pS splits
    ], "namespace string, value string, profile_id string, first_seen date")
    members = spark.createDataFrame([
        (1, "crm_id", "A"), (1, "email", "a@x"),
        (2, "crm_id", "B"), (2, "email", "bc@x"), (2, "crm_id", "C"),
        (3, "email", "s1"), (4, "ecid", "s2"), (4, "ecid", "s3"),
        (5, "ecid", "new"),
    ], "component long, namespace string, value string")
    ids, changes = transform_stable_profile_ids(members, previous, {"crm_id": 100, "email": 50, "ecid": 10}, d3)
    got = {r["component"]: r["profile_id"] for r in ids.collect()}
    split_id, new_id = got[4], got[5]
    assert got == {1: "pA", 2: "pC", 3: "pS", 4: split_id, 5: new_id}
    assert len({split_id, new_id, "pA", "pC", "pS"}) == 5 and len(split_id) == len(new_id) == 20
    assert sorted(tuple(r) for r in changes.collect()) == [("merge", "pC", "pB", 1), ("split", split_id, "pS", 2)]
    # Without a previous map every id is the anchor's: a rerun of the same date gives the same ids.
    again, _ = transform_stable_profile_ids(members, previous, {"crm_id": 100, "email": 50, "ecid": 10}, d3)
    assert {r["component"]: r["profile_id"] for r in again.collect()} == got
