"""Normalisation of identity values: E.164 phones, lower-cased e-mails, blocked values counted per reason."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.errors import CdpError
from cdp.identities import PhoneNormalizationError, e164, normalize, phone_frame, transform_normalize_values
from cdp.workspace.models import Namespace
from jobs.resolve_identities import check_phone_regions, dropped_metrics, transform_stable_profile_ids


def test_e164_with_and_without_a_default_region() -> None:
    assert e164("+33 6 12 34 56 78", None) == ("+33612345678", None)
    assert e164(" 06.12.34.56.78 ", "FR") == ("+33612345678", None)
    assert e164("(415) 555-2671", "US") == ("+14155552671", None)
    assert e164("06 12 34 56 78", None) == (None, "invalid_phone")  # no country code, no region
    assert e164("+33 (6) 12-34", "FR") == (None, "invalid_phone")  # too short
    assert e164("call me", "FR") == (None, "invalid_phone")
    assert e164("  ", "FR") == (None, "empty")


def test_phone_namespace_without_default_region(spark: SparkSession) -> None:
    # default_region is optional: numbers with a country code normalise, the others are dropped and counted.
    namespaces = {"phone": Namespace(code="phone", type="phone"), "mobile": Namespace(code="mobile", type="phone"),
                  "email": Namespace(code="email", type="email")}
    values = spark.createDataFrame([
        ("phone", "+33 6 12 34 56 78"), ("phone", "+1 (415) 555-2671"), ("phone", "06 12 34 56 78"),
        ("phone", "(415) 555-2671"), ("mobile", "+44 7911 123456"), ("mobile", "07911 123456"),
        ("email", "Ann@X.com"),
    ], "namespace string, raw string")
    got = transform_normalize_values(values, namespaces)
    assert sorted(tuple(r) for r in got.collect()) == sorted([
        ("phone", "+33 6 12 34 56 78", "+33612345678", None),
        ("phone", "+1 (415) 555-2671", "+14155552671", None),
        ("phone", "06 12 34 56 78", None, "invalid_phone"),
        ("phone", "(415) 555-2671", None, "invalid_phone"),
        ("mobile", "+44 7911 123456", "+447911123456", None),
        ("mobile", "07911 123456", None, "invalid_phone"),
        ("email", "Ann@X.com", "ann@x.com", None),
    ])
    assert dropped_metrics(got) == {"dropped.phone.invalid_phone": 2, "dropped.mobile.invalid_phone": 1}
    # The column form other steps use (validate, profiles, events) takes no region as well.
    phones = spark.createDataFrame([("+33 6 12 34 56 78",), ("06 12 34 56 78",)], "raw string")
    assert [r["v"] for r in phones.select(normalize("phone", F.col("raw")).alias("v")).collect()] == [
        "+33612345678", None]


def test_errors_while_normalising_name_the_namespace_and_the_setting() -> None:
    with pytest.raises(CdpError) as unknown:
        check_phone_regions({"phone": Namespace(code="phone", type="phone", default_region="XX")})
    assert str(unknown.value) == (
        "namespaces.yaml: namespace 'phone': default_region: 'XX' is not a region the phone library knows; use an "
        "ISO 3166 code such as FR or US, or remove default_region (numbers with a country code need none)")
    check_phone_regions({"phone": Namespace(code="phone", type="phone", default_region="FR"),
                         "other": Namespace(code="other", type="phone")})
    # A region of the wrong type (what a NaN used to be) fails in the phone library: the error says where.
    with pytest.raises(PhoneNormalizationError) as failed:
        phone_frame(pd.Series(["mobile"]), pd.Series(["+33 6 12 34 56 78"]), {"mobile": 7})  # type: ignore[dict-item]
    assert str(failed.value) == (
        "namespaces.yaml: namespace 'mobile': phone normalisation with default_region=7 failed (AttributeError: "
        "'int' object has no attribute 'upper'); check the namespace's default_region (an ISO 3166 code such as "
        "FR, or none)")


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
