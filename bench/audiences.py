"""Audience evaluation: 1, 10 and 50 audiences evaluated together (one scan, one aggregation, one projection)
versus the same audiences evaluated as separate queries.

Profiles and events are generated in Spark (``spark.range``) and written once as parquet under the work
folder, so both ways read the same files; every evaluation is forced with the ``noop`` sink.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.measure import measure
from cdp.audiences import collect_event_counters, event_counters, transform_qualify, with_counters
from cdp.workspace.models import AudienceSpec

RUN_DATE = dt.date(2026, 11, 27)
EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "purchase")
COUNTRIES = ("FR", "DE", "ES", "IT", "GB")


def make_inputs(spark: SparkSession, work: Path, profiles: int, events_per_profile: int) -> tuple[Path, Path]:
    """Write (once per size) profiles and events as parquet; return their folders."""
    base = work / f"audiences-{profiles}"
    profiles_path, events_path = base / "profiles", base / "events"
    if not (profiles_path / "_SUCCESS").exists():
        ids = spark.range(profiles)
        ids.select(F.format_string("p%09d", "id").alias("profile_id"),
                   F.element_at(F.array(*[F.lit(c) for c in COUNTRIES]), (F.col("id") % 5 + 1).cast("int"))
                   .alias("country"),
                   (F.col("id") * 7919 % 5000).alias("points"),
                   (F.col("id") % 3 == 0).alias("consent_marketing")).write.mode("overwrite").parquet(
            str(profiles_path))
    if not (events_path / "_SUCCESS").exists():
        n = profiles * events_per_profile
        rows = spark.range(n)
        h = F.abs(F.xxhash64("id"))
        rows.select(F.format_string("p%09d", (h % profiles)).alias("profile_id"),
                    F.lit("web_events").alias("dataset"),
                    F.element_at(F.array(*[F.lit(t) for t in EVENT_TYPES]), (h % 4 + 1).cast("int"))
                    .alias("event_type"),
                    F.date_sub(F.lit(RUN_DATE), (F.abs(F.xxhash64("id", F.lit(1))) % 90).cast("int")).alias(
                        "event_date"),
                    (F.abs(F.xxhash64("id", F.lit(2))) % 40000 / 100.0).alias("field_revenue")).write.mode(
            "overwrite").parquet(str(events_path))
    return profiles_path, events_path


def make_audiences(count: int) -> list[AudienceSpec]:
    """``count`` different audiences mixing attribute rules, event counts and aggregates over various windows."""
    out = []
    for i in range(count):
        event_type = EVENT_TYPES[i % 4]
        days = (1, 7, 14, 30, 60)[i % 5]
        rule: dict[str, Any]
        if i % 3 == 0:  # the single audience of the 1-audience case reads the events too
            rule = {"events": {"type": event_type, "at_least": 1 + i % 4, "within": {"last_days": days}}}
        elif i % 3 == 1:
            rule = {"all": [{"attribute": "country", "op": "=", "value": COUNTRIES[i % 5]},
                            {"attribute": "points", "op": ">=", "value": 100 * i}]}
        else:
            rule = {"all": [{"attribute": "consent_marketing", "op": "=", "value": True},
                            {"events": {"type": "purchase", "within": {"last_days": days},
                                        "aggregate": {"fn": "sum", "field": "revenue", "op": ">=",
                                                      "value": 50 * (i % 7 + 1)}}}]}
        out.append(AudienceSpec.model_validate({"id": f"a{i:02d}", "name": f"a{i:02d}", "rule": rule}))
    return out


def qualify(profiles: DataFrame, events: DataFrame, audiences: list[AudienceSpec]) -> DataFrame:
    counters = collect_event_counters(audiences)
    facts = with_counters(profiles, event_counters(events, counters, RUN_DATE), counters) if counters else profiles
    return transform_qualify(facts, audiences)


def bench_audiences(spark: SparkSession, work: Path, profiles: int, events_per_profile: int = 10,
                    counts: tuple[int, ...] = (1, 10, 50)) -> list[dict[str, float]]:
    profiles_path, events_path = make_inputs(spark, work, profiles, events_per_profile)
    p, e = spark.read.parquet(str(profiles_path)), spark.read.parquet(str(events_path))
    qualify(p, e, make_audiences(10)).write.format("noop").mode("overwrite").save()  # warm up JVM and file cache
    rows: list[dict[str, float]] = []
    for count in counts:
        audiences = make_audiences(count)
        with measure() as together:
            qualify(p, e, audiences).write.format("noop").mode("overwrite").save()
        with measure() as separate:
            for audience in audiences:
                qualify(p, e, [audience]).write.format("noop").mode("overwrite").save()
        rows.append({"audiences": count, "profiles": profiles, "events": profiles * events_per_profile,
                     "together_s": round(together.seconds, 1), "separate_s": round(separate.seconds, 1),
                     "separate_over_together": round(separate.seconds / together.seconds, 1)})
    first = rows[0]["together_s"]
    for row in rows:
        row["together_vs_1"] = round(row["together_s"] / first, 1)
    return rows
