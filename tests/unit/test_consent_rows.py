"""Consent in a file destination's rows: a purpose read from a nested boolean attribute, ``consent`` checked before
the other reasons (a unit without consent never wins a deduplication), and a change of consent in an incremental
export."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from cdp.destinations.rows import (
    PROFILE,
    REASON,
    STATUS,
    MappingContext,
    exclusion_counts,
    transform_changes,
    transform_exclusions,
    transform_units,
)
from cdp.workspace.models import FieldSpec, IdentityDescriptor, LocalDestination, Namespace

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
CONSENTS = FieldSpec.model_validate({"name": "consents", "type": "object", "fields": [
    {"name": "marketing", "type": "object", "fields": [{"name": "email", "type": "boolean"}]}]})
ATTRIBUTES = {
    "email": FieldSpec(name="email", type="string", format="email", identity=IdentityDescriptor(namespace="email")),
    "country": FieldSpec(name="country", type="string"),
    "consents": CONSENTS,
}
CTX = MappingContext(ATTRIBUTES, {"email": Namespace(code="email", type="email")}, text_only=True,
                     consent_attributes={"marketing.email": "consents.marketing.email"})
PROFILES = T.StructType([
    T.StructField("profile_id", T.StringType()), T.StructField("email", T.StringType()),
    T.StructField("country", T.StringType()),
    T.StructField("consents", T.StructType([T.StructField("marketing", T.StructType([
        T.StructField("email", T.BooleanType())]))])),
])
MEMBERS = "audience_id string, profile_id string, status string, last_qualification_time timestamp"


def destination(**extra: Any) -> LocalDestination:
    config: dict[str, Any] = {"name": "mail", "type": "local", "path": "out", "audiences": ["gold"],
                              "consent": ["marketing.email"], "mapping": [{"source": "email"}, {"source": "country"}]}
    config.update(extra)
    return LocalDestination.model_validate(config)


def profiles(spark: SparkSession, rows: list[tuple[str, str | None, str, bool | None]]) -> DataFrame:
    return spark.createDataFrame([(p, e, c, None if consent is None else {"marketing": {"email": consent}})
                                  for p, e, c, consent in rows], PROFILES)


def reasons(df: DataFrame) -> list[tuple[str, str | None]]:
    return [(r[PROFILE], r[REASON]) for r in df.orderBy(PROFILE).collect()]


def test_consent_comes_first_and_never_wins_a_deduplication(spark: SparkSession) -> None:
    dest = destination(deduplication={"attributes": ["country"]})
    people = profiles(spark, [
        ("p1", "ann@example.com", "FR", False),  # qualified last: would win FR's deduplication with consent
        ("p2", "bob@example.com", "FR", True),
        ("p3", "cy@example.com", "FR", None),  # no consents object at all
        ("p4", None, "DE", None),  # nothing identifies her either: consent is the reason counted
    ])
    members = spark.createDataFrame([("gold", "p1", "realized", T1), ("gold", "p2", "realized", T0),
                                     ("gold", "p3", "realized", T0), ("gold", "p4", "realized", T0)], MEMBERS)
    excluded = transform_exclusions(transform_units(members, people, dest, CTX), dest, CTX)
    assert reasons(excluded) == [("p1", "consent"), ("p2", None), ("p3", "consent"), ("p4", "consent")]
    assert exclusion_counts(excluded) == {"received": 4, "activated": 1, "excluded.consent": 3,
                                          "excluded.no_identity": 0, "excluded.missing_mandatory": 0,
                                          "excluded.deduplicated": 0}


def test_a_destination_without_purposes_ignores_consent(spark: SparkSession) -> None:
    dest = destination(consent=[])
    people = profiles(spark, [("p1", "ann@example.com", "FR", False)])
    members = spark.createDataFrame([("gold", "p1", "realized", T1)], MEMBERS)
    assert reasons(transform_exclusions(transform_units(members, people, dest, CTX), dest, CTX)) == [("p1", None)]


def test_incremental_a_change_of_consent_is_a_change(spark: SparkSession) -> None:
    dest = destination(export="incremental", layout="combined", file_name="{destination}_{date}")
    members = spark.createDataFrame([("gold", "p1", "realized", T0), ("gold", "p2", "realized", T0),
                                     ("gold", "p3", "realized", T0)], MEMBERS)
    base = transform_units(members, profiles(spark, [("p1", "ann@example.com", "FR", True),
                                                     ("p2", "bob@example.com", "DE", False),
                                                     ("p3", "cy@example.com", "US", True)]), dest, CTX)
    # Same values the next day: Ann withdraws, Bob consents, Cy is unchanged.
    today = transform_units(members, profiles(spark, [("p1", "ann@example.com", "FR", False),
                                                      ("p2", "bob@example.com", "DE", True),
                                                      ("p3", "cy@example.com", "US", True)]), dest, CTX)
    exits = spark.createDataFrame([], MEMBERS)
    changes = transform_exclusions(transform_changes(today, base, exits, dest), dest, CTX)
    assert [(r[PROFILE], r["__s_gold"], r[REASON]) for r in changes.orderBy(PROFILE).collect()] == [
        ("p1", "existing", "consent"), ("p2", "existing", None)]
    assert STATUS not in changes.columns  # combined: a status per audience
