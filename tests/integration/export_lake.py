"""A small lake for the example workspace, as ingest, resolution and build_profiles leave it (export tests)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp.lake import AUDIENCE_MEMBERSHIP, DATASET, IDENTITY_MAP, PROFILES, Lake
from cdp.schemas import dataset_struct, spark_type
from cdp.workspace.loader import Workspace

D = dt.date(2026, 11, 27)
UTC = dt.UTC


def at(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def write_delta(spark: SparkSession, rows: list[tuple[Any, ...]], schema: T.StructType, path: str,
                partition_by: list[str] | None = None) -> None:
    writer = spark.createDataFrame(rows, schema).write.format("delta").mode("append")
    (writer.partitionBy(*partition_by) if partition_by else writer).save(path)


def build_lake(spark: SparkSession, ws: Workspace, lake: Lake) -> None:
    """PROFILES and IDENTITY_MAP of the run date, and the two event datasets (as ingest leaves them)."""
    attributes = ws.profile_attributes()
    profile_schema = T.StructType([
        T.StructField("run_date", T.DateType()), T.StructField("profile_id", T.StringType()),
        T.StructField("identities", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
        T.StructField("identity_count", T.IntegerType()),
        *[T.StructField(name, spark_type(spec)) for name, spec in attributes.items()],
    ])
    profiles: dict[str, tuple[dict[str, list[str]], dict[str, Any]]] = {
        "prof_a": ({"crm_id": ["C1"], "email": ["ann@example.com"], "ecid": ["E1"]},
                   {"crm_id": "C1", "email": "ann@example.com", "first_name": "Ann", "tier": "gold", "country": "FR",
                    "points": 1500, "consent_marketing": False}),
        # two CRM ids, unsorted in the map; a first name that needs quoting and escaping
        "prof_b": ({"crm_id": ["C3", "C2"], "loyalty_id": ["L2"]},
                   {"crm_id": "C2", "email": "bob@example.com", "first_name": 'Bob "Bobby", Jr',
                    "tier": "platinum", "country": "DE", "points": 200}),
        # an anonymous web visitor: no CRM id (an empty list exports as an empty cell)
        "prof_c": ({"ecid": ["E3"], "crm_id": []}, {"first_name": "Cy", "country": "US"}),
        "prof_d": ({"crm_id": ["C4"], "ecid": ["E4"]},
                   {"crm_id": "C4", "first_name": "Dee", "tier": "silver", "country": "FR", "points": 500}),
    }
    rows = [(D, pid, ids, sum(len(v) for v in ids.values()), *[values.get(a) for a in attributes])
            for pid, (ids, values) in profiles.items()]
    write_delta(spark, rows, profile_schema, lake.path(PROFILES), ["run_date"])

    first_seen = dt.date(2026, 11, 1)
    assert IDENTITY_MAP.schema is not None
    mapping = [(D, "ecid", "E1", 1, "prof_a"), (D, "email", "ann@example.com", 2, "prof_a"),
               (D, "crm_id", "C1", 3, "prof_a"), (D, "ecid", "E3", 4, "prof_c"), (D, "ecid", "E4", 5, "prof_d"),
               # the day before, E4 was resolved to another profile: must not be read for D
               (D - dt.timedelta(days=1), "ecid", "E4", 5, "prof_c")]
    write_delta(spark, [(*m, first_seen, D, m[3]) for m in mapping], IDENTITY_MAP.schema, lake.path(IDENTITY_MAP),
                ["run_date"])

    def meta(n: int, batch: dt.date) -> tuple[Any, ...]:
        return (f"file_{batch}.jsonl", n, batch, dt.datetime.combine(batch, dt.time(1), tzinfo=UTC))

    web = [
        ("w1", "add_to_cart", at(25), " E3 ", None, None, "sku1", None, *meta(1, dt.date(2026, 11, 25))),
        ("w2", "add_to_cart", at(26), "E4", "C4", None, "sku2", None, *meta(1, dt.date(2026, 11, 26))),
        ("w3", "purchase", at(27), "E4", "C4", None, "sku2", 20.0, *meta(1, D)),
        # 7 days before the run date: outside cart_abandoners' 7 days
        ("w4", "add_to_cart", at(20), "E1", None, None, "sku3", None, *meta(1, dt.date(2026, 11, 20))),
        # landed after the run date: a run of D must not see it
        ("w5", "add_to_cart", at(27, 12), "E1", None, None, "sku3", None, *meta(1, dt.date(2026, 11, 28))),
    ]
    write_delta(spark, web, dataset_struct(ws.schema_of("web_events")), lake.path(DATASET, "web_events"))
    email = [
        ("m1", "open", at(20), " ANN@example.com", "camp1", *meta(1, dt.date(2026, 11, 20))),
        ("m2", "open", at(26), "ann@example.com", "camp2", *meta(1, dt.date(2026, 11, 26))),
    ]
    write_delta(spark, email, dataset_struct(ws.schema_of("email_events")), lake.path(DATASET, "email_events"))


def build_members_lake(spark: SparkSession, ws: Workspace, lake: Lake, members: int, audience: str,
                       run_date: dt.date) -> None:
    """``members`` generated profiles, all realized members of ``audience`` on ``run_date``, as build_profiles and
    evaluate_audiences leave them (the export benchmark and the kill test)."""
    attributes = ws.profile_attributes()
    ids = spark.range(members).withColumn("pid", F.format_string("p%010d", F.col("id")))
    values: dict[str, Any] = {
        "crm_id": F.format_string("C%09d", F.col("id")),
        "email": F.format_string("person%d@example.com", F.col("id")),
        "first_name": F.element_at(F.array(*[F.lit(n) for n in ("Ann", "Bob", "Cat", "Dan", "Eve")]),
                                   (F.col("id") % 5 + 1).cast("int")),
        "last_name": F.format_string("Name%d", F.col("id") % 100_000),
        "country": F.element_at(F.array(F.lit("FR"), F.lit("DE"), F.lit("US")), (F.col("id") % 3 + 1).cast("int")),
        "city": F.lit("Paris"),
        "tier": F.element_at(F.array(F.lit("gold"), F.lit("platinum")), (F.col("id") % 2 + 1).cast("int")),
        "points": (F.col("id") % 5000).cast("long"),
    }
    profiles = ids.select(
        F.lit(run_date).alias("run_date"), F.col("pid").alias("profile_id"),
        F.create_map(F.lit("crm_id"), F.array(values["crm_id"]), F.lit("email"),
                     F.array(values["email"])).alias("identities"),
        F.lit(2).alias("identity_count"),
        *[(values[name].cast(spark_type(spec)) if name in values else F.lit(None).cast(spark_type(spec))).alias(name)
          for name, spec in attributes.items()])
    profiles.write.format("delta").mode("overwrite").partitionBy("run_date").save(lake.path(PROFILES))
    assert AUDIENCE_MEMBERSHIP.schema is not None
    qualified = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
    memberships = ids.select(
        F.lit(run_date).alias("run_date"), F.lit(audience).alias("audience_id"), F.col("pid").alias("profile_id"),
        F.lit("realized").alias("status"), F.lit(qualified).alias("last_qualification_time"),
        F.lit(run_date).alias("status_since"), F.lit(None).cast("string").alias("exit_reason"),
        F.lit(None).cast("string").alias("merged_into"))
    memberships = memberships.select(*[F.col(f.name).cast(f.dataType) for f in AUDIENCE_MEMBERSHIP.schema.fields])
    memberships.write.format("delta").mode("overwrite").partitionBy("run_date").save(
        lake.path(AUDIENCE_MEMBERSHIP))
