"""CSV records that span lines (RFC 4180 quoted fields with newlines): one record, numbered by its first line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import SparkSession

from cdp.ingestion.checks import transform_check, transform_quarantine, transform_valid
from cdp.ingestion.layout import RAW, REASONS
from cdp.ingestion.records import read_records
from cdp.schemas import ROW_NUMBER, SOURCE_FILE
from cdp.workspace.models import DatasetSpec, Guardrails, SchemaSpec

NOTE = SchemaSpec.model_validate({
    "name": "note", "class": "profile", "timestamp_field": "updated_at",
    "fields": [
        {"name": "id", "type": "string", "required": True, "identity": {"namespace": "crm", "primary": True}},
        {"name": "note", "type": "string"},
        {"name": "updated_at", "type": "timestamp", "required": True},
    ],
})
TS = "2024-01-05T10:00:00Z"
DAY = dt.date(2024, 1, 5)


def dataset(**csv: object) -> DatasetSpec:
    return DatasetSpec.model_validate({"name": "notes", "schema": "note", "format": "csv",
                                       "source": {"path": "notes/{date}"}, "csv": csv})


def checked_rows(spark: SparkSession, spec: DatasetSpec, paths: list[str]) -> list[tuple[object, ...]]:
    parsed, unreadable = read_records(spark, spec, NOTE, paths)
    assert unreadable == []
    checked = transform_check(parsed, NOTE, Guardrails())
    rows = checked.orderBy(SOURCE_FILE, ROW_NUMBER).collect()
    return [(Path(r[SOURCE_FILE]).name, r[ROW_NUMBER], r[RAW], [x["code"] for x in r[REASONS]]) for r in rows]


def test_rfc4180_quoted_fields_span_lines(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_bytes("\r\n".join([
        "id,note,updated_at",
        'A1,"first line',
        f'second ""quoted"" line",{TS}',
        f'A2,Monitor 27" wide,{TS}',  # a quote inside an unquoted field is literal: it opens nothing
        'A3,"has',
        "",
        f'blank line inside",{TS}',
        'A4,"extra, columns',
        f'here",{TS},oops',
        "",
        f'A5,"never closed,{TS}',
        f"A6,swallowed,{TS}",
    ]).encode() + b"\r\n")
    rows = checked_rows(spark, dataset(escape='"'), [str(path)])
    assert rows == [
        ("notes.csv", 2, f'A1,"first line\nsecond ""quoted"" line",{TS}', []),
        ("notes.csv", 4, f'A2,Monitor 27" wide,{TS}', []),
        ("notes.csv", 5, f'A3,"has\n\nblank line inside",{TS}', []),
        ("notes.csv", 8, f'A4,"extra, columns\nhere",{TS},oops', ["malformed_record"]),
        ("notes.csv", 11, f'A5,"never closed,{TS}\nA6,swallowed,{TS}', ["malformed_record"]),
    ]
    parsed, _ = read_records(spark, dataset(escape='"'), NOTE, [str(path)])
    checked = transform_check(parsed, NOTE, Guardrails())
    valid = transform_valid(checked, NOTE, DAY).orderBy(ROW_NUMBER).collect()
    assert [(r["id"], r["note"], r[ROW_NUMBER]) for r in valid] == [
        ("A1", 'first line\nsecond "quoted" line', 2), ("A2", 'Monitor 27" wide', 4),
        ("A3", "has\n\nblank line inside", 5)]
    quarantine = transform_quarantine(checked, "notes", DAY).orderBy("row_number").collect()
    assert [(r["row_number"], [(x["code"], x["message"]) for x in r["reasons"]]) for r in quarantine] == [
        (8, [("malformed_record", "row does not have the 3 columns of the header")]),
        (11, [("malformed_record", "a quoted field opened in this record is not closed before the end of the file")]),
    ]
    # Nothing lost: 5 records read = 3 valid + 2 quarantined.
    assert checked.count() == len(valid) + len(quarantine) == 5


def test_backslash_escapes_and_files_without_multiline_records(spark: SparkSession, tmp_path: Path) -> None:
    # The default escape is a backslash: an escaped quote does not open or close a field.
    multi, plain = tmp_path / "a.csv", tmp_path / "b.csv"
    multi.write_text(f'id,note,updated_at\nB1,"say \\"hi\\"\nbye",{TS}\nB2,"one \\"line\\"",{TS}\n')
    plain.write_text(f"id,updated_at,note\n\nC1,{TS},x\nC2,{TS}\n")
    rows = checked_rows(spark, dataset(), [str(multi), str(plain)])
    assert rows == [
        ("a.csv", 2, f'B1,"say \\"hi\\"\nbye",{TS}', []),
        ("a.csv", 4, f'B2,"one \\"line\\"",{TS}', []),
        ("b.csv", 3, f"C1,{TS},x", []),
        ("b.csv", 4, f"C2,{TS}", ["malformed_record"]),
    ]
    parsed, _ = read_records(spark, dataset(), NOTE, [str(multi), str(plain)])
    valid = transform_valid(transform_check(parsed, NOTE, Guardrails()), NOTE, DAY)
    assert sorted((r["id"], r["note"]) for r in valid.collect()) == [
        ("B1", 'say "hi"\nbye'), ("B2", 'one "line"'), ("C1", "x")]
