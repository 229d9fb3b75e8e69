"""Ingest transforms: which record of a key a batch keeps, and which column a table is keyed on."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from cdp.errors import CdpError
from cdp.workspace.models import SchemaSpec
from jobs import ingest

STAGED = T.StructType([
    T.StructField("id", T.StringType(), True),
    T.StructField("v", T.StringType(), True),
    T.StructField("_source_file", T.StringType(), False),
    T.StructField("_row_number", T.LongType(), True),
    T.StructField("_batch_date", T.DateType(), False),
    T.StructField("_record_ts", T.TimestampType(), False),
])
DAY = dt.date(2024, 1, 5)


def ts(hour: int) -> dt.datetime:
    return dt.datetime(2024, 1, 5, hour)


def staged(spark: SparkSession, rows: list[tuple[object, ...]]) -> DataFrame:
    return spark.createDataFrame(rows, STAGED)


def kept(df: DataFrame) -> list[tuple[str, str]]:
    return sorted((r["id"], r["v"]) for r in df.collect())


def test_latest_per_key_prefers_newest_record_time_then_file_and_row(spark: SparkSession) -> None:
    df = staged(spark, [
        ("p1", "older", "/in/b.csv", 9, DAY, ts(8)),
        ("p1", "newest", "/in/a.csv", 2, DAY, ts(9)),
        ("p2", "same time, earlier file", "/in/a.csv", 7, DAY, ts(9)),
        ("p2", "same time, later file", "/in/b.csv", 1, DAY, ts(9)),
        ("p3", "same time and file, row 2", "/in/a.csv", 2, DAY, ts(9)),
        ("p3", "same time and file, row 3", "/in/a.csv", 3, DAY, ts(9)),
        (None, "no key", "/in/a.csv", 4, DAY, ts(9)),
    ])
    assert kept(ingest.transform_latest_per_key(df, "id")) == [
        ("p1", "newest"), ("p2", "same time, later file"), ("p3", "same time and file, row 3")]


def test_first_per_key_keeps_the_earliest_occurrence(spark: SparkSession) -> None:
    df = staged(spark, [
        ("e1", "second file", "/in/b.jsonl", 1, DAY, ts(8)),
        ("e1", "first file, row 4", "/in/a.jsonl", 4, DAY, ts(9)),
        ("e1", "first file, row 6", "/in/a.jsonl", 6, DAY, ts(7)),
        ("e2", "only", "/in/b.jsonl", 2, DAY, ts(8)),
    ])
    assert kept(ingest.transform_first_per_key(df, "id")) == [("e1", "first file, row 4"), ("e2", "only")]


def test_merge_key() -> None:
    profile = SchemaSpec.model_validate({"name": "p", "class": "profile", "fields": [
        {"name": "email", "type": "string", "identity": {"namespace": "email"}},
        {"name": "crm_id", "type": "string", "identity": {"namespace": "crm_id", "primary": True}}]})
    event = SchemaSpec.model_validate({"name": "e", "class": "event", "id_field": "event_id", "fields": [
        {"name": "event_id", "type": "string", "required": True},
        {"name": "ecid", "type": "string", "identity": {"namespace": "ecid", "primary": True}}]})
    assert ingest.merge_key(profile) == "crm_id"
    assert ingest.merge_key(event) == "event_id"
    no_primary = profile.model_copy(update={"fields": profile.fields[:1]})
    with pytest.raises(CdpError, match="schema p: a profile schema needs a primary identity to be ingested"):
        ingest.merge_key(no_primary)
