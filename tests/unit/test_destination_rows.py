"""Which rows a file destination receives: mapping, hashing, exclusions, deduplication, incremental changes."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from cdp.destinations.rows import (
    AUDIENCE,
    PROFILE,
    QUALIFIED,
    REASON,
    STATUS,
    MappingContext,
    exclusion_counts,
    transform_changes,
    transform_exclusions,
    transform_protect_formulas,
    transform_units,
    value_column,
)
from cdp.workspace.models import FieldSpec, IdentityDescriptor, LocalDestination, Namespace

D = dt.date(2026, 11, 27)
T1 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)

ATTRIBUTES = {
    "email": FieldSpec(name="email", type="string", format="email", identity=IdentityDescriptor(namespace="email")),
    "first_name": FieldSpec(name="first_name", type="string"),
    "country": FieldSpec(name="country", type="string"),
    "points": FieldSpec(name="points", type="long"),
}
NAMESPACES = {"email": Namespace(code="email", type="email"), "crm_id": Namespace(code="crm_id", type="person")}
PROFILES = T.StructType([
    T.StructField("profile_id", T.StringType()),
    T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
    *[T.StructField(n, T.LongType() if n == "points" else T.StringType()) for n in ATTRIBUTES],
])
MEMBERS = "audience_id string, profile_id string, status string, last_qualification_time timestamp"


def destination(**extra: Any) -> LocalDestination:
    config: dict[str, Any] = {
        "name": "landing", "type": "local", "path": "out", "audiences": ["gold", "fr"],
        "mapping": [{"source": "identity:crm_id", "name": "crm"}, {"source": "email", "hash": "sha256"},
                    {"source": "first_name"}, {"source": "points"}]}
    config.update(extra)
    return LocalDestination.model_validate(config)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def profiles(spark: SparkSession, rows: list[tuple[Any, ...]]) -> DataFrame:
    return spark.createDataFrame(rows, PROFILES)


@pytest.fixture()
def ctx() -> MappingContext:
    return MappingContext(ATTRIBUTES, NAMESPACES, text_only=True)


def units_of(spark: SparkSession, dest: LocalDestination, ctx: MappingContext, members: list[tuple[Any, ...]],
             people: list[tuple[Any, ...]]) -> DataFrame:
    return transform_units(spark.createDataFrame(members, MEMBERS), profiles(spark, people), dest, ctx)


def values(df: DataFrame, count: int) -> list[tuple[Any, ...]]:
    cols = [AUDIENCE, PROFILE, STATUS, *[value_column(i) for i in range(count)]]
    if REASON in df.columns:
        cols.append(REASON)
    return sorted(tuple(r) for r in df.select(*cols).collect())


PEOPLE = [
    ("p1", {"crm_id": ["C2", "C1"], "email": ["ann@example.com"]}, " Ann@Example.com ", "Ann", "FR", 10),
    ("p2", {"email": ["bob@example.com"]}, "bob@example.com", "=cmd|' /C calc'!A0", "FR", -5),
    ("p3", {"ecid": ["1" * 38]}, None, "Cy", "US", None),  # an anonymous visitor: nothing identifies them
]


def test_mapping_hashes_normalised_values_and_joins_identities(spark: SparkSession, ctx: MappingContext) -> None:
    members = [("gold", "p1", "realized", T1), ("fr", "p1", "existing", T1), ("gold", "p2", "existing", T1),
               ("gold", "p3", "realized", T1), ("fr", "p9", "exited", T0), ("other", "p2", "realized", T1)]
    units = units_of(spark, destination(), ctx, members, PEOPLE)
    assert values(units, 4) == [
        ("fr", "p1", "existing", "C1|C2", sha("ann@example.com"), "Ann", 10),
        ("gold", "p1", "realized", "C1|C2", sha("ann@example.com"), "Ann", 10),
        ("gold", "p2", "existing", None, sha("bob@example.com"), "=cmd|' /C calc'!A0", -5),
        ("gold", "p3", "realized", None, None, "Cy", None),
    ]


def test_exclusions_are_counted_and_reconcile(spark: SparkSession, ctx: MappingContext) -> None:
    dest = destination(mapping=[{"source": "identity:crm_id", "name": "crm"}, {"source": "email"},
                                {"source": "first_name"}, {"source": "points", "required": True}])
    people = [*PEOPLE, ("p7", {"crm_id": ["C7"]}, None, "Gus", "DE", None)]
    members = [("gold", "p1", "realized", T1), ("gold", "p7", "existing", T1), ("gold", "p3", "realized", T1)]
    excluded = transform_exclusions(units_of(spark, dest, ctx, members, people), dest, ctx)
    # p3 lacks points too: a row that identifies no one is counted as such first.
    assert [(r[PROFILE], r[REASON]) for r in excluded.orderBy(PROFILE).collect()] == [
        ("p1", None), ("p3", "no_identity"), ("p7", "missing_mandatory")]
    assert exclusion_counts(excluded) == {"received": 3, "activated": 1, "excluded.consent": 0,
                                          "excluded.no_identity": 1, "excluded.missing_mandatory": 1,
                                          "excluded.deduplicated": 0}


def test_deduplication_keeps_the_latest_qualification_then_the_smallest_id(spark: SparkSession,
                                                                            ctx: MappingContext) -> None:
    dest = destination(deduplication={"attributes": ["country"]})
    people = [*PEOPLE, ("p4", {"crm_id": ["C4"]}, None, "Dee", "FR", 1),
              ("p0", {"crm_id": ["C0"]}, None, "Al", "US", 2)]
    members = [("gold", "p1", "realized", T0), ("gold", "p2", "existing", T1), ("gold", "p4", "realized", T1),
               ("gold", "p0", "realized", T0), ("gold", "p3", "realized", T1), ("fr", "p1", "realized", T0)]
    excluded = transform_exclusions(units_of(spark, dest, ctx, members, people), dest, ctx)
    # FR in gold: p2 and p4 qualified last, p2 has the smaller id; p3 (US) identifies no one, so p0 is not
    # deduplicated against it. The fr audience is a file of its own.
    assert sorted((r[AUDIENCE], r[PROFILE], r[REASON]) for r in excluded.collect()) == [
        ("fr", "p1", None), ("gold", "p0", None), ("gold", "p1", "deduplicated"), ("gold", "p2", None),
        ("gold", "p3", "no_identity"), ("gold", "p4", "deduplicated")]


def test_incremental_changes_entered_exited_and_changed(spark: SparkSession, ctx: MappingContext) -> None:
    dest = destination(audiences=["gold"], export="incremental")
    before_people = [PEOPLE[0], PEOPLE[1], ("p5", {"crm_id": ["C5"]}, None, "Eve", "FR", 3)]
    base = units_of(spark, dest, ctx, [("gold", "p1", "realized", T0), ("gold", "p2", "realized", T0),
                                       ("gold", "p5", "realized", T0)], before_people)
    changed_ann = ("p1", {"crm_id": ["C1", "C2"], "email": ["ann@example.com"]}, "ann@example.com", "Ann", "FR", 99)
    today_people = [changed_ann, PEOPLE[1], ("p6", {"crm_id": ["C6"]}, None, "Fay", "FR", 4)]
    today = units_of(spark, dest, ctx, [("gold", "p1", "existing", T1), ("gold", "p2", "existing", T1),
                                        ("gold", "p6", "realized", T1)], today_people)
    exits = spark.createDataFrame([("gold", "p5", "exited", T0)], MEMBERS)
    changes = transform_changes(today, base, exits, dest)
    # p2 did not change; p5 left (merged away: no profile today) and keeps the values it was delivered with.
    # (Spark returns the UTC session's timestamps naive.)
    t1, t0 = T1.replace(tzinfo=None), T0.replace(tzinfo=None)
    assert sorted((r[PROFILE], r[STATUS], r[value_column(0)], r[value_column(3)], r[QUALIFIED]) for r in
                  changes.collect()) == [("p1", "existing", "C1|C2", 99, t1), ("p5", "exited", "C5", 3, t0),
                                         ("p6", "realized", "C6", 4, t1)]


def test_combined_layout_has_a_status_per_audience(spark: SparkSession, ctx: MappingContext) -> None:
    dest = destination(layout="combined", file_name="{destination}_{date}")
    members = [("gold", "p1", "realized", T1), ("fr", "p1", "existing", T0), ("fr", "p2", "existing", T1)]
    units = units_of(spark, dest, ctx, members, PEOPLE)
    rows = sorted((r[PROFILE], r["__s_gold"], r["__s_fr"], r[QUALIFIED]) for r in units.collect())
    assert rows == [("p1", "realized", "existing", T1.replace(tzinfo=None)),
                    ("p2", None, "existing", T1.replace(tzinfo=None))]


def test_formula_protection_spares_phones_and_numbers(spark: SparkSession) -> None:
    df = spark.createDataFrame([("=1+2", "+33612345678", -5, "@SUM(A1)", "-x", "\tx", "plain")],
                               "a string, b string, n long, c string, d string, e string, f string")
    protected = transform_protect_formulas(df, df.columns).first()
    assert protected is not None
    assert tuple(protected) == ("'=1+2", "+33612345678", -5, "'@SUM(A1)", "'-x", "'\tx", "plain")
